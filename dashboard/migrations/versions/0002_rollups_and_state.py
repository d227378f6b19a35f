"""Rollups, latency samples, shifts, the live outbox, and current site state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    # One row per (scope, grain, bucket, field): scope is a site_id or '*' for
    # the network, grain 'm' (minute), 'h' (hour) or 'd' (day).
    op.create_table(
        "rollups",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("grain", sa.String(1), nullable=False),
        sa.Column("bucket", Timestamp, nullable=False),
        sa.Column("field", sa.String(48), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("scope", "grain", "bucket", "field", name="rollups_pkey"),
    )
    op.create_table(
        "samples",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("time", Timestamp, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("kind", "source", "id", name="samples_pkey"),
    )
    op.create_index("samples_group", "samples", ["group_key", "kind"])
    op.create_table(
        "shifts",
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("start", Timestamp, nullable=False),
        sa.Column("end", Timestamp, nullable=True),
        sa.Column("hourly_cost", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("source", "id", name="shifts_pkey"),
    )
    op.create_index("shifts_worker", "shifts", ["worker_id"])
    op.create_index("shifts_open", "shifts", ["site_id"], postgresql_where=sa.text('"end" IS NULL'))
    op.create_table(
        "live_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("deltas", Json, nullable=False),
        sqlite_autoincrement=True,  # ids never reused
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("priority", sa.String(16)),
        sa.Column("created_at", Timestamp),
        sa.Column("promised_start", Timestamp),
        sa.Column("promised_end", Timestamp),
        sa.Column("promise_time", Timestamp),
        sa.Column("stage", sa.String(16)),
        sa.Column("stage_rank", sa.SmallInteger),
        sa.Column("stage_time", Timestamp),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("orders_site_stage", "orders", ["site_id", "stage"])
    op.create_table(
        "docks",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("dock_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("status_time", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("site_id", "dock_id", name="docks_pkey"),
    )
    op.create_table(
        "routes",
        sa.Column("route_id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("dock_id", sa.String(64)),
        sa.Column("arrived_at", Timestamp),
        sa.Column("loading_started_at", Timestamp),
        sa.Column("departed_at", Timestamp),
    )
    op.create_index("routes_site", "routes", ["site_id"])
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("shift_state", sa.String(8)),
        sa.Column("shift_time", Timestamp),
        sa.Column("absent_at", Timestamp),
    )
    op.create_index("workers_site", "workers", ["site_id"])
    op.create_table(
        "sites",
        sa.Column("site_id", sa.String(32), primary_key=True),
        sa.Column("first_event_time", Timestamp, nullable=False),
        sa.Column("last_event_time", Timestamp, nullable=False),
    )


def downgrade() -> None:
    for table in ("sites", "workers", "routes", "docks", "orders", "live_outbox", "shifts", "samples", "rollups"):
        op.drop_table(table)
