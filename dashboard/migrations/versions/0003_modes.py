"""Degradation modes: current state per mode and scope, and the audit trail of changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    # site_id is a site or '*' for the whole network.
    op.create_table(
        "mode_states",
        sa.Column("mode", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("params", Json, nullable=False),
        sa.Column("changed_at", Timestamp, nullable=False),
        sa.Column("changed_by", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("mode", "site_id", name="mode_states_pkey"),
    )
    # Append-only; the old values are null on the first change of a mode and scope.
    op.create_table(
        "mode_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("mode", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("old_enabled", sa.Boolean, nullable=True),
        sa.Column("new_enabled", sa.Boolean, nullable=False),
        sa.Column("old_params", Json, nullable=True),
        sa.Column("new_params", Json, nullable=False),
        sa.Column("changed_at", Timestamp, nullable=False),
        sa.Column("changed_by", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("mode_audit_scope", "mode_audit", ["mode", "site_id", "id"])


def downgrade() -> None:
    op.drop_index("mode_audit_scope", table_name="mode_audit")
    op.drop_table("mode_audit")
    op.drop_table("mode_states")
