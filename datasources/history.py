"""History from the SQL store (PostgreSQL or SQLite), as plain domain objects."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dashboard.aggregates import NETWORK, aware, in_history, truncate
from dashboard.db import docks, events, orders, rollups, routes, shifts, sites, workers
from dashboard.folding import unfolded_changes
from dashboard.metrics import GRAIN_SIZES, Shift, finalize, labor_by_bucket, window_buckets
from dashboard.stream import StoreUnavailable
from datasources.breaker import PASS_THROUGH, CircuitBreaker, PassThrough

__all__ = ["HistorySource", "SiteStateReader", "StoreUnavailable"]

T = TypeVar("T")
HISTORY_GRAINS = ("d", "h", "m")
# What SQLAlchemy raises when the database cannot be reached (or the pool waited too long).
DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def run_query(engine: sa.Engine, breaker: CircuitBreaker | PassThrough, work: Callable[[sa.Connection], T]) -> T:
    """Run ``work`` on a connection through the database's breaker; StoreUnavailable when the database is down."""

    def attempt() -> T:
        try:
            with engine.connect() as connection:
                return work(connection)
        except DATABASE_DOWN as error:
            orig = getattr(error, "orig", None) or error
            raise StoreUnavailable(f"database: {str(orig).splitlines()[0]}") from error

    return breaker.call(attempt)


def _overlapping_shifts(start: datetime, end: datetime) -> sa.Select:
    return sa.select(shifts.c.site_id, shifts.c.start, shifts.c["end"], shifts.c.hourly_cost).where(
        shifts.c.start < end, sa.or_(shifts.c["end"].is_(None), shifts.c["end"] > start)
    )


def _shift(row: Any) -> Shift:
    return Shift(
        ("", ""), "", row.site_id, aware(row.start), None if row.end is None else aware(row.end), row.hourly_cost
    )


# Labor cost summed in the database: the overlap of each shift with the range
# (an open shift runs to now), times its hourly cost.
_LABOR_SQL = sa.text(
    "SELECT COALESCE(SUM(GREATEST(0, EXTRACT(EPOCH FROM "
    'LEAST(COALESCE("end", GREATEST(CAST(:now AS timestamptz), start)), CAST(:end AS timestamptz)) '
    "- GREATEST(start, CAST(:start AS timestamptz)))) * hourly_cost / 3600), 0) "
    'FROM shifts WHERE start < :end AND ("end" IS NULL OR "end" > :start) '
    "AND (CAST(:site AS text) IS NULL OR site_id = :site)"
)


def _labor_cost(connection: sa.Connection, site_id: str | None, start: datetime, end: datetime, now: datetime) -> float:
    """Return the labor cost of [start, end) for a site or the network."""
    if connection.dialect.name == "postgresql":
        params = {"start": start, "end": end, "now": now, "site": site_id}
        return float(connection.execute(_LABOR_SQL, params).scalar_one())
    query = _overlapping_shifts(start, end)
    if site_id is not None:
        query = query.where(shifts.c.site_id == site_id)
    return sum(_shift(row).cost_between(start, end, now) for row in connection.execute(query))


def _covering(scope: str, site_ids: list[str], grain: str, first: datetime, stop: datetime) -> Any:
    """Select the rollup rows of ``scope`` in one (grain, first, stop) range, or its sites' where history keeps none."""
    owners = rollups.c.scope == scope if in_history(scope, grain) else rollups.c.scope.in_(site_ids)
    return sa.and_(owners, rollups.c.grain == grain, rollups.c.bucket >= first, rollups.c.bucket < stop)


def _rows(condition: Any) -> sa.Select:
    """Select the (scope, bucket, field, value) of the rollup rows that match ``condition``."""
    return sa.select(rollups.c.scope, rollups.c.bucket, rollups.c.field, rollups.c.value).where(condition)


def _sums(keys: Sequence[str], stored: sa.Select, unfolded: Sequence[sa.Select]) -> sa.Select | sa.CompoundSelect:
    """Sum by ``keys`` the stored rows, and apart the changes waiting for their fold, in one statement.

    One snapshot, so a fold in between cannot count a change twice; the
    caller adds the two sums. One sum over the union of all the rows cost
    the 90-day network range 10 % more than the stored rows' own.
    """
    sums = []
    for part in [stored, sa.union_all(*unfolded)] if unfolded else [stored]:
        rows = part.subquery()
        columns = [rows.c[key] for key in keys]
        sums.append(sa.select(*columns, sa.func.sum(rows.c.value)).group_by(*columns))
    return sa.union_all(*sums) if unfolded else sums[0]


class HistorySource:
    """Answer range queries from rollups; raise StoreUnavailable when the database is down."""

    def __init__(self, engine: sa.Engine, breaker: CircuitBreaker | PassThrough = PASS_THROUGH) -> None:
        self._engine = engine
        self._breaker = breaker

    def _run(self, work: Callable[[sa.Connection], T]) -> T:
        return run_query(self._engine, self._breaker, work)

    def metrics(self, site_id: str | None, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
        """Return the contract's metrics of [start, end) (whole minutes) for a site or the network."""
        scope = site_id or NETWORK
        ranges = window_buckets(start, end, HISTORY_GRAINS)

        def read(connection: sa.Connection) -> tuple[dict[str, Any], float]:
            fields: dict[str, Any] = {}
            if ranges:
                site_ids: list[str] = []
                if not all(in_history(scope, grain) for grain, _, _ in ranges):
                    site_ids = sorted(connection.execute(sa.select(sites.c.site_id)).scalars())
                stored = _rows(sa.or_(*(_covering(scope, site_ids, *piece) for piece in ranges)))
                folded = [(first, stop) for grain, first, stop in ranges if grain != "m"]
                owners = None if site_id is None else [site_id]
                unfolded = unfolded_changes(connection.dialect.name, "h", folded, owners)
                for name, value in connection.execute(_sums(("field",), stored, unfolded)):
                    fields[name] = fields.get(name, 0.0) + value
            return fields, _labor_cost(connection, site_id, start, end, now)

        fields, labor = self._run(read)
        return finalize(fields, labor)

    def series(
        self, site_id: str | None, start: datetime, end: datetime, grain: str, now: datetime
    ) -> list[dict[str, Any]]:
        """Return the metrics of each ``grain`` bucket ("h" or "d") from the one holding ``start`` up to ``end``.

        Every bucket is listed, with null rates where it had no delivery.
        """
        per_scope = self._buckets([site_id or NETWORK], start, end, grain, now)
        return per_scope.get(site_id or NETWORK, [])

    def site_buckets(
        self, start: datetime, end: datetime, grain: str, now: datetime
    ) -> dict[str, list[dict[str, Any]]]:
        """Return, for every site (not the network), the metrics of each ``grain`` bucket in the range."""
        return self._buckets(None, start, end, grain, now)

    def _buckets(
        self, scopes: list[str] | None, start: datetime, end: datetime, grain: str, now: datetime
    ) -> dict[str, list[dict[str, Any]]]:
        size = GRAIN_SIZES[grain]
        first = truncate(start, grain)
        moments = []
        cursor = first
        while cursor < end:
            moments.append(cursor)
            cursor += size
        scope_filter = rollups.c.scope.in_(scopes) if scopes is not None else rollups.c.scope != NETWORK
        stored = _rows(
            sa.and_(rollups.c.grain == grain, rollups.c.bucket >= first, rollups.c.bucket < end, scope_filter)
        )
        site_ids = None if scopes is None else [scope for scope in scopes if scope != NETWORK]
        dialect = self._engine.dialect.name
        unfolded = unfolded_changes(dialect, grain, [(first, end)], site_ids) if site_ids != [] else []
        if scopes is not None and NETWORK in scopes:
            unfolded += unfolded_changes(dialect, grain, [(first, end)], None, as_network=True)
        query = _sums(("scope", "bucket", "field"), stored, unfolded)
        shift_query = _overlapping_shifts(first, end)
        if scopes is not None and NETWORK not in scopes:
            shift_query = shift_query.where(shifts.c.site_id.in_(scopes))
        rows, shift_rows = self._run(lambda c: (c.execute(query).all(), c.execute(shift_query).all()))
        fields: dict[str, dict[datetime, dict[str, float]]] = {}
        for scope, bucket, name, value in rows:
            summed = fields.setdefault(scope, {}).setdefault(aware(bucket), {})
            summed[name] = summed.get(name, 0.0) + value
        all_shifts = [_shift(row) for row in shift_rows]
        for shift in all_shifts:  # a site with only shifts still has a cost
            if scopes is None:
                fields.setdefault(shift.site_id, {})
        answer = {}
        for scope in scopes if scopes is not None else sorted(fields):
            mine = [shift for shift in all_shifts if scope == NETWORK or shift.site_id == scope]
            labor = labor_by_bucket(mine, first, size, len(moments), end, now)
            answer[scope] = [
                {"bucket": moment, **finalize(fields.get(scope, {}).get(moment, {}), labor[i])}
                for i, moment in enumerate(moments)
            ]
        return answer

    def mode_changes(self, start: datetime, end: datetime, site_id: str | None = None) -> list[dict[str, Any]]:
        """Return the ``mode.changed`` events in [start, end), oldest first; for a site, its own and network-wide."""
        query = mode_changes_query(start, end, site_id)
        rows = self._run(lambda connection: connection.execute(query).all())
        return [
            {
                "time": aware(row.time),
                "site_id": row.site_id,
                "mode": row.payload["data"]["mode"],
                "enabled": row.payload["data"]["enabled"],
                "actor": row.payload["data"]["actor"],
                "reason": row.payload["data"]["reason"],
            }
            for row in rows
        ]


def mode_changes_query(start: datetime, end: datetime, site_id: str | None) -> sa.Select:
    """Return the query of ``mode.changed`` events in [start, end), for a site (and the network) or all."""
    # The type is written into the SQL, not bound, so that even a prepared
    # statement's generic plan uses the partial index ``events_mode_changes``.
    mode_changed = events.c.type == sa.literal("mode.changed", literal_execute=True)
    query = (
        sa.select(events.c.time, events.c.site_id, events.c.payload)
        .where(mode_changed, events.c.time >= start, events.c.time < end)
        .order_by(events.c.time, events.c.id)
    )
    if site_id is not None:
        query = query.where(events.c.site_id.in_((site_id, NETWORK)))
    return query


# -- current state of a site --------------------------------------------------------

# Orders waiting for the warehouse: created (or picked) and not yet packed.
BACKLOG_STAGES = ("created", "picked")
DONE_STAGES = ("delivered", "canceled")
# Arrivals older than this without loading are data gaps, not trucks at a door.
TRUCK_HORIZON = timedelta(hours=24)
STUCK_LIST_LIMIT = 500


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else aware(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SiteStateReader:
    """Current state of sites from the state tables, "as of now"."""

    def __init__(
        self,
        engine: sa.Engine,
        stuck_minutes: Mapping[str, float],
        breaker: CircuitBreaker | PassThrough = PASS_THROUGH,
    ) -> None:
        self._engine = engine
        self._stuck = {stage: timedelta(minutes=m) for stage, m in stuck_minutes.items()}
        self._breaker = breaker

    def _run(self, work: Callable[[sa.Connection], T]) -> T:
        return run_query(self._engine, self._breaker, work)

    def site_ids(self) -> list[str]:
        """Return every site that has sent an event, sorted."""
        return self._run(lambda c: [r.site_id for r in c.execute(sa.select(sites.c.site_id).order_by(sites.c.site_id))])

    def state(self, site_id: str, now: datetime) -> dict[str, Any] | None:
        """Return the site's docks, backlog, labor and stuck orders as of ``now``; None for an unknown site."""
        return self._run(lambda connection: self._state(connection, site_id, now))

    def _state(self, connection: sa.Connection, site_id: str, now: datetime) -> dict[str, Any] | None:
        site = connection.execute(sa.select(sites).where(sites.c.site_id == site_id)).first()
        if site is None:
            return None
        door_rows = connection.execute(sa.select(docks).where(docks.c.site_id == site_id)).all()
        recent = connection.execute(
            sa.select(routes.c.dock_id, routes.c.arrived_at, routes.c.loading_started_at, routes.c.departed_at).where(
                routes.c.site_id == site_id,
                routes.c.dock_id.is_not(None),
                routes.c.arrived_at >= now - TRUCK_HORIZON,
            )
        ).all()
        doors: dict[str, dict[str, Any]] = {}
        for dock_id, status, reason, since in [(r.dock_id, r.status, r.reason, r.status_time) for r in door_rows] + [
            (r.dock_id, "open", None, None) for r in recent
        ]:
            doors.setdefault(
                dock_id,
                {
                    "dock_id": dock_id,
                    "status": status,
                    "reason": reason,
                    "status_since": _iso(since),
                    "trucks_waiting": 0,
                    "oldest_wait_s": None,
                },
            )
        for row in recent:
            if row.loading_started_at is None and row.departed_at is None:
                door = doors[row.dock_id]
                door["trucks_waiting"] += 1
                wait = max(0.0, (now - aware(row.arrived_at)).total_seconds())
                door["oldest_wait_s"] = max(door["oldest_wait_s"] or 0.0, wait)

        stage_counts = dict(
            connection.execute(
                sa.select(orders.c.stage, sa.func.count()).where(orders.c.site_id == site_id).group_by(orders.c.stage)
            ).all()
        )
        backlog = sum(stage_counts.get(stage, 0) for stage in BACKLOG_STAGES)
        staff = connection.execute(
            sa.select(workers.c.role, workers.c.shift_state, workers.c.absent_at).where(workers.c.site_id == site_id)
        ).all()
        active: dict[str, int] = {}
        absent = 0
        for row in staff:
            if row.shift_state == "on":
                active[row.role or "unknown"] = active.get(row.role or "unknown", 0) + 1
            elif row.absent_at is not None and now - aware(row.absent_at) < timedelta(hours=24):
                absent += 1
        pickers = active.get("picker", 0)
        stuck, stuck_count = self._stuck_orders(connection, site_id, now)
        return {
            "site_id": site_id,
            "as_of": _iso(now),
            "last_event_at": _iso(site.last_event_time),
            "docks": sorted(doors.values(), key=lambda door: door["dock_id"]),
            "trucks_waiting": sum(door["trucks_waiting"] for door in doors.values()),
            "backlog": backlog,
            "packed_not_loaded": stage_counts.get("packed", 0),
            "orders_by_stage": {stage or "unknown": n for stage, n in sorted(stage_counts.items(), key=str)},
            "active_workers": dict(sorted(active.items())),
            "absent_workers": absent,
            "backlog_per_active_picker": backlog / pickers if pickers else None,
            "stuck_orders": stuck,
            "stuck_count": stuck_count,
        }

    def summaries(self, now: datetime) -> dict[str, dict[str, Any]]:
        """Return, for every site, the few current-state figures of a wall screen, in a handful of queries.

        The figures are those ``state`` gives (trucks waiting, backlog, pickers,
        stuck orders...), grouped by site instead of read site by site.
        """
        return self._run(lambda connection: self._summaries(connection, now))

    def _summaries(self, connection: sa.Connection, now: datetime) -> dict[str, dict[str, Any]]:
        answer: dict[str, dict[str, Any]] = {
            row.site_id: {
                "trucks_waiting": 0,
                "oldest_wait_s": None,
                "backlog": 0,
                "pickers": 0,
                "backlog_per_active_picker": None,
                "stuck_count": 0,
                "out_of_service": [],
                "last_event_at": _iso(row.last_event_time),
            }
            for row in connection.execute(sa.select(sites.c.site_id, sites.c.last_event_time))
        }
        waiting = connection.execute(
            sa.select(routes.c.site_id, sa.func.count(), sa.func.min(routes.c.arrived_at))
            .where(
                routes.c.dock_id.is_not(None),
                routes.c.arrived_at >= now - TRUCK_HORIZON,
                routes.c.loading_started_at.is_(None),
                routes.c.departed_at.is_(None),
            )
            .group_by(routes.c.site_id)
        )
        for site_id, count, first in waiting:
            if site_id in answer:
                answer[site_id]["trucks_waiting"] = count
                answer[site_id]["oldest_wait_s"] = max(0.0, (now - aware(first)).total_seconds())
        backlog = connection.execute(
            sa.select(orders.c.site_id, sa.func.count())
            .where(orders.c.stage.in_(BACKLOG_STAGES))
            .group_by(orders.c.site_id)
        )
        for site_id, count in backlog:
            if site_id in answer:
                answer[site_id]["backlog"] = count
        pickers = connection.execute(
            sa.select(workers.c.site_id, sa.func.count())
            .where(workers.c.shift_state == "on", workers.c.role == "picker")
            .group_by(workers.c.site_id)
        )
        for site_id, count in pickers:
            if site_id in answer:
                answer[site_id]["pickers"] = count
        stuck = connection.execute(
            sa.select(orders.c.site_id, sa.func.count()).where(self._stuck_condition(now)).group_by(orders.c.site_id)
        )
        for site_id, count in stuck:
            if site_id in answer:
                answer[site_id]["stuck_count"] = count
        out = connection.execute(
            sa.select(docks.c.site_id, docks.c.dock_id, docks.c.reason)
            .where(docks.c.status == "out_of_service")
            .order_by(docks.c.site_id, docks.c.dock_id)
        )
        for site_id, dock_id, reason in out:
            if site_id in answer:
                answer[site_id]["out_of_service"].append([dock_id, reason or ""])
        for figures in answer.values():
            if figures["pickers"]:
                figures["backlog_per_active_picker"] = figures["backlog"] / figures["pickers"]
        return answer

    def _stuck_condition(self, now: datetime) -> sa.ColumnElement[bool]:
        late = sa.and_(orders.c.promised_end.is_not(None), orders.c.promised_end < now)
        stalled = [
            sa.and_(orders.c.stage == stage, orders.c.stage_time < now - limit) for stage, limit in self._stuck.items()
        ]
        return sa.and_(orders.c.stage.is_not(None), orders.c.stage.not_in(DONE_STAGES), sa.or_(late, *stalled))

    def _stuck_orders(self, connection: sa.Connection, site_id: str, now: datetime) -> tuple[list[dict], int]:
        late = sa.and_(orders.c.promised_end.is_not(None), orders.c.promised_end < now)
        stalled = [
            sa.and_(orders.c.stage == stage, orders.c.stage_time < now - limit) for stage, limit in self._stuck.items()
        ]
        condition = sa.and_(
            orders.c.site_id == site_id,
            orders.c.stage.is_not(None),
            orders.c.stage.not_in(DONE_STAGES),
            sa.or_(late, *stalled),
        )
        count = connection.execute(sa.select(sa.func.count()).select_from(orders).where(condition)).scalar_one()
        rows = connection.execute(
            sa.select(orders).where(condition).order_by(orders.c.stage_time, orders.c.order_id).limit(STUCK_LIST_LIMIT)
        ).all()
        stuck = []
        for row in rows:
            since = aware(row.stage_time)
            limit = self._stuck.get(row.stage)
            reasons = []
            if limit is not None and now - since > limit:
                reasons.append(f"no progress for over {int(limit.total_seconds() // 60)} min at {row.stage}")
            if row.promised_end is not None and aware(row.promised_end) < now:
                reasons.append("promise passed without delivery")
            stuck.append(
                {
                    "order_id": row.order_id,
                    "stage": row.stage,
                    "since": _iso(since),
                    "stuck_for_s": round((now - since).total_seconds(), 3),
                    "priority": row.priority,
                    "promised_end": _iso(row.promised_end),
                    "attempts": row.attempts,
                    "reason": "; ".join(reasons),
                }
            )
        return stuck, count

    def trail(self, order_id: str) -> list[dict[str, Any]] | None:
        """Return every event of the order and of the routes it rode, in event-time order."""
        return self._run(lambda connection: order_trail(connection, order_id))


def order_trail(connection: sa.Connection, order_id: str) -> list[dict[str, Any]] | None:
    """Return the trail of an order (see SiteStateReader.trail) on an open connection."""
    columns = (
        events.c.source,
        events.c.id,
        events.c.type,
        events.c.site_id,
        events.c.time,
        events.c.received_at,
        events.c.route_id,
        events.c.payload,
    )
    own = connection.execute(sa.select(*columns).where(events.c.order_id == order_id)).all()
    if not own:
        return None
    route_ids = sorted({row.route_id for row in own if row.route_id})
    rides = (
        connection.execute(
            sa.select(*columns).where(events.c.route_id.in_(route_ids), events.c.order_id.is_(None))
        ).all()
        if route_ids
        else []
    )
    own_keys = {(row.source, row.id) for row in own}
    rows = sorted([*own, *rides], key=lambda row: (aware(row.time), row.source, row.id))
    return [
        {
            "time": _iso(row.time),
            "type": row.type,
            "source": row.source,
            "id": row.id,
            "received_at": _iso(row.received_at),
            "site_id": row.site_id,
            "of": "order" if (row.source, row.id) in own_keys else "route",
            "data": row.payload["data"],
        }
        for row in rows
    ]
