"""A partial index for the order events the worker pairs per order.

A packing or a loading completes an order's ready-to-truck pair. The worker
finds the other half by order_id in this index, instead of reading every
event of the order (created, picked, attempted...) and filtering by type.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ORDER_PAIRS = "type IN ('order.packed', 'order.loaded')"


def upgrade() -> None:
    op.create_index(
        "events_order_pairs",
        "events",
        ["order_id"],
        postgresql_where=sa.text(_ORDER_PAIRS),
        sqlite_where=sa.text(_ORDER_PAIRS),
    )


def downgrade() -> None:
    op.drop_index("events_order_pairs", table_name="events")
