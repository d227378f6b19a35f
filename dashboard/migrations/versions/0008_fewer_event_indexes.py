"""Fewer indexes on events: each one is paid by every insert.

Nine indexes made the history insert the largest cost of ingest (about 17 µs
of PostgreSQL time per event, against 10.5 µs with five). One index per
correlation id that is read, led by the id and then the type, serves every
reader of ``events``:

- ``events_order (order_id, type)``: an order's trail, and the worker's
  packing and loading partners (it replaces ``events_order_id`` and
  ``events_order_pairs``);
- ``events_route (route_id, stop_seq, type)``: a route's trail, and the
  worker's truck and stop partners (it replaces ``events_route_id`` and
  ``events_route_pairs``);
- ``events_worker (worker_id, type, time)``: a worker's events, and the
  worker's shift partners (it replaces ``events_worker_id`` and
  ``events_worker_shifts``);
- ``events_mode_changes (time)``, for the mode marks on the trade-off charts
  (it replaces ``events_type_time``, a whole-table index for one rare type);
- the primary key, unchanged.

``events_site_time`` had no reader: figures by site come from the rollups.
Building the new indexes takes a while on a large table, and inserts wait
for it: run the migration before starting the workers of the new version.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ORDER_PAIRS = "type IN ('order.packed', 'order.loaded')"
_ROUTE_PAIRS = "type IN ('truck.arrived', 'truck.loading_started', 'truck.departed', 'stop.arrived', 'stop.departed')"
_MODE_CHANGES = "type = 'mode.changed'"
_SHIFTS = "type IN ('worker.shift_started', 'worker.shift_ended')"


def _partial(name: str, columns: list[str], where: str) -> None:
    op.create_index(name, "events", columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def upgrade() -> None:
    _partial("events_order", ["order_id", "type"], "order_id IS NOT NULL")
    _partial("events_route", ["route_id", "stop_seq", "type"], "route_id IS NOT NULL")
    _partial("events_worker", ["worker_id", "type", "time"], "worker_id IS NOT NULL")
    _partial("events_mode_changes", ["time"], _MODE_CHANGES)
    for name in (
        "events_order_id",
        "events_order_pairs",
        "events_route_id",
        "events_route_pairs",
        "events_type_time",
        "events_site_time",
        "events_worker_id",
        "events_worker_shifts",
    ):
        op.drop_index(name, table_name="events")


def downgrade() -> None:
    op.create_index("events_site_time", "events", ["site_id", "time"])
    op.create_index("events_type_time", "events", ["type", "time"])
    for name in ("order_id", "route_id", "worker_id"):
        _partial(f"events_{name}", [name, "time"], f"{name} IS NOT NULL")
    _partial("events_route_pairs", ["route_id", "stop_seq", "type"], _ROUTE_PAIRS)
    _partial("events_order_pairs", ["order_id"], _ORDER_PAIRS)
    _partial("events_worker_shifts", ["worker_id", "time"], _SHIFTS)
    for name in ("events_order", "events_route", "events_worker", "events_mode_changes"):
        op.drop_index(name, table_name="events")
