"""Drop ``samples_group``: nothing reads samples by their group.

Samples are read back only by their key (kind, source, id), the primary
key, when a batch recomputes its pairs. Every new sample paid an insert into
``samples_group (group_key, kind)`` as well.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("samples_group", table_name="samples")


def downgrade() -> None:
    op.create_index("samples_group", "samples", ["group_key", "kind"])
