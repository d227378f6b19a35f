"""Events history and API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)
CORRELATION_IDS = ("order_id", "route_id", "driver_id", "worker_id", "dock_id")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("time", Timestamp, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("stream_id", sa.String(41), nullable=False),
        *(sa.Column(name, sa.String(64)) for name in CORRELATION_IDS),
        sa.Column("payload", Json, nullable=False),
        sa.PrimaryKeyConstraint("source", "id", name="events_pkey"),
    )
    op.create_index("events_site_time", "events", ["site_id", "time"])
    op.create_index("events_type_time", "events", ["type", "time"])
    # Correlation ids: most events carry only one or two, so partial indexes.
    for name in ("order_id", "route_id", "worker_id"):
        op.create_index(
            f"events_{name}",
            "events",
            [name, "time"],
            postgresql_where=sa.text(f"{name} IS NOT NULL"),
            sqlite_where=sa.text(f"{name} IS NOT NULL"),
        )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("events")
