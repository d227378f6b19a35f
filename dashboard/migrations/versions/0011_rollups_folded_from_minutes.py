"""Hour and day rollups are folded from the minutes, not rewritten by every batch.

Workers now write only their sites' minute rows, and mark each (site, hour)
they changed in ``rollups_unfolded``; a periodic fold rewrites the marked
hours and days, the network's included (``dashboard.folding``). Every batch
used to rewrite the same hour and day rows as well: 56 % of its rollup writes.

The rows already stored were kept in step by the same deltas, so the upgrade
only makes the table. The downgrade folds what is marked first, so that the
older workers find hour and day rows that agree with the minutes.

Run it with the workers and web servers of the new version: an older web
server would not add the changes waiting for their fold.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dashboard.folding import fold

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "rollups_unfolded",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("hour", timestamp, nullable=False),
        sa.Column("hour_end", timestamp, nullable=False),
        sa.Column("day", timestamp, nullable=False),
        sa.Column("day_end", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("site_id", "hour", name="rollups_unfolded_pkey"),
    )


def downgrade() -> None:
    more = True
    while more:  # chunk after chunk, all in the migration's transaction
        _, more = fold(op.get_bind())
    op.drop_table("rollups_unfolded")
