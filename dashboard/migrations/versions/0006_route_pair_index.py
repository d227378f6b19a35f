"""Stop sequence as a column, and an index to look up route pairs by key.

The worker pairs a new stop or truck event with its one or two partners. It
finds them by (route_id, stop_seq) in this partial index instead of reading
every event of the route.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ROUTE_PAIRS = "type IN ('truck.arrived', 'truck.loading_started', 'truck.departed', 'stop.arrived', 'stop.departed')"


def upgrade() -> None:
    op.add_column("events", sa.Column("stop_seq", sa.Integer))
    if op.get_bind().dialect.name == "postgresql":
        backfill = (
            "UPDATE events SET stop_seq = (payload #>> '{data,stop_seq}')::integer "
            "WHERE jsonb_typeof(payload #> '{data,stop_seq}') = 'number'"
        )
    else:
        backfill = (
            "UPDATE events SET stop_seq = json_extract(payload, '$.data.stop_seq') "
            "WHERE json_type(payload, '$.data.stop_seq') = 'integer'"
        )
    op.execute(backfill)
    op.create_index(
        "events_route_pairs",
        "events",
        ["route_id", "stop_seq", "type"],
        postgresql_where=sa.text(_ROUTE_PAIRS),
        sqlite_where=sa.text(_ROUTE_PAIRS),
    )


def downgrade() -> None:
    op.drop_index("events_route_pairs", table_name="events")
    op.drop_column("events", "stop_seq")
