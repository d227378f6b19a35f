"""A partial index for the shift events the worker pairs per worker.

The worker_id index also covers every pick and pack (thousands per worker);
pairing a shift only needs the worker's shift events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_SHIFTS = "type IN ('worker.shift_started', 'worker.shift_ended')"


def upgrade() -> None:
    op.create_index(
        "events_worker_shifts",
        "events",
        ["worker_id", "time"],
        postgresql_where=sa.text(_SHIFTS),
        sqlite_where=sa.text(_SHIFTS),
    )


def downgrade() -> None:
    op.drop_index("events_worker_shifts", table_name="events")
