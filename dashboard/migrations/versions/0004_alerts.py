"""Alerts: every alert with its lifecycle, and the condition episodes being timed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    # site_id is a site or '*' for the whole network.
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", Timestamp, nullable=False),
        sa.Column("acknowledged_at", Timestamp, nullable=True),
        sa.Column("acknowledged_by", sa.String(256), nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("resolved_at", Timestamp, nullable=True),
        sa.Column("resolved_by", sa.String(256), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("suggestion", sa.Text, nullable=True),
        sa.Column("last_true_at", Timestamp, nullable=False),
        sqlite_autoincrement=True,
    )
    # One alert not yet resolved per rule and scope (a partial unique index, on both databases).
    op.create_index(
        "alerts_one_unresolved",
        "alerts",
        ["rule", "site_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
        sqlite_where=sa.text("status <> 'resolved'"),
    )
    op.create_index("alerts_opened_at", "alerts", ["opened_at"])
    op.create_table(
        "alert_conditions",
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("since", Timestamp, nullable=False),
        sa.Column("alerted", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("rule", "site_id", name="alert_conditions_pkey"),
    )


def downgrade() -> None:
    op.drop_table("alert_conditions")
    op.drop_index("alerts_opened_at", table_name="alerts")
    op.drop_index("alerts_one_unresolved", table_name="alerts")
    op.drop_table("alerts")
