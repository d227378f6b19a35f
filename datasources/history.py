"""History from the SQL store (PostgreSQL or SQLite), as plain domain objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dashboard.aggregates import NETWORK, aware
from dashboard.db import rollups, shifts
from dashboard.metrics import Shift, finalize, window_buckets
from dashboard.stream import StoreUnavailable

__all__ = ["HistorySource", "StoreUnavailable"]

HISTORY_GRAINS = ("d", "h", "m")


class HistorySource:
    """Answer range queries from rollups; raise StoreUnavailable when the database is down."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def metrics(self, site_id: str | None, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
        """Return the contract's metrics of [start, end) (whole minutes) for a site or the network."""
        ranges = window_buckets(start, end, HISTORY_GRAINS)
        covered = sa.or_(
            *(sa.and_(rollups.c.grain == g, rollups.c.bucket >= lo, rollups.c.bucket < hi) for g, lo, hi in ranges)
        )
        field_query = (
            sa.select(rollups.c.field, sa.func.sum(rollups.c.value))
            .where(rollups.c.scope == (site_id or NETWORK), covered)
            .group_by(rollups.c.field)
        )
        open_query = sa.select(shifts.c.site_id, shifts.c.start, shifts.c.hourly_cost).where(
            shifts.c.end.is_(None), shifts.c.start < end
        )
        if site_id is not None:
            open_query = open_query.where(shifts.c.site_id == site_id)
        try:
            with self._engine.connect() as connection:
                fields = {name: value for name, value in connection.execute(field_query)} if ranges else {}
                open_shifts = connection.execute(open_query).all()
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
            raise StoreUnavailable(f"database: {str(error.orig).splitlines()[0]}") from error
        open_labor = sum(
            Shift(("", ""), "", row.site_id, aware(row.start), None, row.hourly_cost).cost_between(start, end, now)
            for row in open_shifts
        )
        return finalize(fields, open_labor)
