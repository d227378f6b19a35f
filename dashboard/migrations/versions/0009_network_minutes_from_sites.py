"""History keeps no network rollups at the minute grain: the sites' rows make them.

Every batch wrote each minute's change twice, for its site and for the
network, and the network's rows were the ones every worker's batch touched.
A query reads network minutes only at the edges of its range, where the
sites' rows are summed instead (``dashboard.aggregates.in_history``). The
upgrade deletes the rows; the downgrade sums them back from the sites.

Run it with the workers and web servers of the new version: an older web
server would read the network's minute edges as empty.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM rollups WHERE scope = '*' AND grain = 'm'")


def downgrade() -> None:
    op.execute(
        "INSERT INTO rollups (scope, grain, bucket, field, value) "
        "SELECT '*', 'm', bucket, field, sum(value) FROM rollups "
        "WHERE grain = 'm' AND scope <> '*' GROUP BY bucket, field"
    )
