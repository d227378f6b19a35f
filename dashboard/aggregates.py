"""Aggregation inside the worker's history transaction.

For the events a batch adds to history (never a redelivered one), in the same
transaction as the insert:

1. count fields of delivery attempts go to their buckets;
2. the pairs the new events touch (routes, orders, workers) are recomputed
   from history (the batch's own new events from memory: see
   ``PairKeys.facts``) with the pure functions of ``dashboard.metrics``; a
   sample or shift that changed moves its old contribution out and its new
   one in, so a half that arrives hours late lands in the bucket of the
   event the contract attributes it to;
3. the sites' minute rollups take the deltas, and their hours are marked
   for ``dashboard.folding`` to fold into hour and day rows later (the
   network's minutes are the sum of the sites', added when read: see
   ``in_history``); one outbox row carries the minute and hour deltas, the
   network's included, to Redis after the commit;
4. the current state tables (orders, docks, routes, workers, sites) move to
   the newest event by event time.

Each transaction first shares the fold lock (see ``dashboard.folding``).
Concurrent workers serialize on the pairs their new events belong to (one
PostgreSQL advisory lock per dock wait, driver-idle gap, ready-to-truck pair
and worker's shifts), taken after the insert and before the partners are read.
Of two halves committed by two workers at once, the second to take the lock
sees the first's, so the pair is always made; batches that share no pair never
wait for each other.
"""

from __future__ import annotations

import functools
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dashboard import metrics
from dashboard.db import (
    docks,
    events,
    live_outbox,
    orders,
    rollups,
    rollups_unfolded,
    routes,
    samples,
    shifts,
    sites,
    workers,
)
from dashboard.folding import NETWORK, marks, share_fold_lock
from dashboard.history import STOP_SEQ_MAX, StoredEvent, insert_events, stop_seq_column
from dashboard.metrics import Fact, Key, Sample

LIVE_GRAINS = ("m", "h")

ROUTE_PAIR_TYPES = ("truck.arrived", "truck.loading_started", "truck.departed", "stop.arrived", "stop.departed")
ORDER_PAIR_TYPES = ("order.packed", "order.loaded")
SHIFT_TYPES = ("worker.shift_started", "worker.shift_ended")


def aware(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; SQLite hands back naive UTC datetimes."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def truncate(moment: datetime, grain: str) -> datetime:
    """Return the start of the bucket of ``grain`` that holds ``moment``."""
    if grain == "m":
        return moment.replace(second=0, microsecond=0)
    if grain == "h":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def in_history(scope: str, grain: str) -> bool:
    """Tell whether history keeps rollup rows of ``scope`` at ``grain``.

    Not the network's minutes. A range query reads minutes only at its
    edges, where summing the sites' rows is cheap; storing them would write
    a second row for each site's minute row, one that every worker's batch
    shares and waits on.
    """
    return not (scope == NETWORK and grain == "m")


@functools.lru_cache(maxsize=4096)
def _buckets(minute: datetime) -> tuple[tuple[str, datetime], ...]:
    """Return (grain, bucket start) of ``minute`` for every live grain; a batch asks for the same minutes often."""
    return tuple((grain, truncate(minute, grain)) for grain in LIVE_GRAINS)


@dataclass
class Deltas:
    """Changes to rollup fields, and the shifts that changed, from one batch."""

    # (site, minute, field) -> change; spread to the live grains and to the network once, by ``values``.
    minutes: dict[tuple[str, datetime, str], float] = field(default_factory=lambda: defaultdict(float))
    # key -> [site, start epoch, end epoch or None, hourly cost]: labor cost is
    # summed from shifts at query time, so a shift is one row, not a row a minute.
    shifts: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, site_id: str, moment: datetime, field_name: str, value: float) -> None:
        """Add ``value`` to a field in the minute of ``moment`` at a site."""
        self.minutes[(site_id, moment.replace(second=0, microsecond=0), field_name)] += value

    def __bool__(self) -> bool:
        return bool(self.minutes or self.shifts)

    @functools.cached_property
    def values(self) -> dict[tuple[str, str, datetime, str], float]:
        """Return the changes by (scope, grain, bucket, field) at the live grains, for the site and the network.

        Read once the batch's changes are all added.
        """
        values: dict[tuple[str, str, datetime, str], float] = defaultdict(float)
        for (site_id, minute, name), value in self.minutes.items():
            if value == 0:
                continue
            for grain, bucket in _buckets(minute):
                values[(site_id, grain, bucket, name)] += value
                values[(NETWORK, grain, bucket, name)] += value
        return values

    def live_payload(self, since: datetime) -> dict[str, Any]:
        """Return what Redis needs: minute and hour deltas from ``since`` on, and the changed shifts."""
        oldest = {grain: truncate(since, grain) for grain in LIVE_GRAINS}
        increments = [
            [scope, grain, int(bucket.timestamp()), name, value]
            for (scope, grain, bucket, name), value in self.values.items()
            if grain in oldest and bucket >= oldest[grain] and value != 0
        ]
        return {
            "incr": increments,
            "shifts": self.shifts,
            # With the row id, names this change for the apply-once marker, even if
            # ids are ever reused (a restored database, SQLite's rowids).
            "nonce": secrets.token_hex(8),
        }


def shift_key(key: Key) -> str:
    """Return a shift's key (its start event's source and id) as one string."""
    return orjson.dumps(list(key)).decode()


def _upsert(
    connection: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    updates: Callable[[Any], dict[str, Any]] | None,
) -> None:
    """Insert ``rows``, or update those whose key exists with ``updates(excluded)`` (None: leave them).

    On PostgreSQL the rows travel as one JSON array that
    ``jsonb_populate_recordset`` turns back into the table's row type: one
    statement per batch, not one per row, compiled once per table. Callers
    sort the rows by key, so concurrent workers take row locks in the same
    order and never deadlock. ``updates`` must be a module-level function, as
    the compiled statement is cached by it.
    """
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.execute(_on_conflict(sqlite.insert(table), table, updates), list(rows))
        return
    sql = _postgresql_upsert(connection.dialect, table, tuple(rows[0]), updates)
    connection.exec_driver_sql(sql, {"rows": orjson.dumps(rows).decode()})


@functools.lru_cache(maxsize=64)  # a few tables per engine; bounded for processes that make many engines
def _postgresql_upsert(
    dialect: sa.Dialect, table: sa.Table, names: tuple[str, ...], updates: Callable[[Any], dict[str, Any]] | None
) -> str:
    """Return the upsert of ``names`` from a JSON array of rows, as the driver's SQL."""
    source = sa.select(*(sa.column(name) for name in names)).select_from(
        sa.text(f"jsonb_populate_recordset(NULL::{table.name}, CAST(:rows AS jsonb))")
    )
    insert = postgresql.insert(table).from_select(names, source)
    return str(_on_conflict(insert, table, updates).compile(dialect=dialect))


def _on_conflict(insert: Any, table: sa.Table, updates: Callable[[Any], dict[str, Any]] | None) -> Any:
    keys = list(table.primary_key)
    if updates is None:
        return insert.on_conflict_do_nothing(index_elements=keys)
    return insert.on_conflict_do_update(index_elements=keys, set_=updates(insert.excluded))


# What pairing needs of an event, without reading back its whole payload.
_DATA = events.c.payload["data"]
_PAIR_COLUMNS = (
    events.c.source,
    events.c.id,
    events.c.type,
    events.c.site_id,
    events.c.time,
    events.c.route_id,
    events.c.order_id,
    events.c.worker_id,
    events.c.stop_seq,
    _DATA["planned_drive_s"].as_float().label("planned_drive_s"),
    _DATA["hourly_cost"].as_float().label("hourly_cost"),
)
_PAIR_DATA = ("route_id", "order_id", "worker_id", "stop_seq", "planned_drive_s", "hourly_cost")


def _fact(row: Any) -> Fact:
    source, id_, type_, site_id, moment, *values = row
    data = {name: value for name, value in zip(_PAIR_DATA, values, strict=True) if value is not None}
    return Fact((source, id_), type_, site_id, aware(moment), data)


def _lock_pairs(connection: sa.Connection, names: set[str]) -> None:
    """Take the transaction's advisory locks on ``names``, in one order for every worker."""
    if connection.dialect.name != "postgresql" or not names:
        return  # SQLite serializes writers on its own
    connection.execute(
        sa.text(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtext(k) AS h "
            "FROM jsonb_array_elements_text(CAST(:keys AS jsonb)) AS k ORDER BY 1) AS locks"
        ),
        {"keys": _json_list(names)},
    )


def _try_lock_pairs(connection: sa.Connection, names: set[str]) -> set[str]:
    """Take the advisory locks on ``names`` that are free, without waiting; return the others."""
    if connection.dialect.name != "postgresql" or not names:
        return set()
    busy = connection.execute(
        sa.text(
            "SELECT k FROM jsonb_array_elements_text(CAST(:keys AS jsonb)) AS k "
            "WHERE NOT pg_try_advisory_xact_lock(hashtext(k))"
        ),
        {"keys": _json_list(names)},
    )
    return set(busy.scalars())


def _json_list(values: Iterable[Any]) -> str:
    """Return values as one JSON array: how keys travel to PostgreSQL.

    psycopg formats a Python list as an array literal in Python, about 0.75 µs
    an element, and PostgreSQL parses it again; orjson writes JSON in C, and
    ``jsonb_array_elements`` reads it back in a third of the server's time.
    """
    return orjson.dumps(list(values)).decode()


@dataclass
class Deferred:
    """The pairs and shifts of a batch whose locks another worker held: settled after its commit."""

    pairs: PairKeys
    shift_workers: set[str]

    def __bool__(self) -> bool:
        return bool(self.pairs or self.shift_workers)

    def lock_names(self) -> set[str]:
        """Return the names of the locks that settling these takes."""
        return self.pairs.lock_names() | {_shift_lock(worker) for worker in self.shift_workers}


Outbox = tuple[int, dict[str, Any]]


def apply_batch(
    connection: sa.Connection, batch: Sequence[StoredEvent], live_since: datetime
) -> tuple[Outbox | None, Deferred]:
    """Store the batch and what derives from it; return its live outbox row (id, payload) or None, and what it deferred.

    Runs inside the caller's transaction, first in it (it shares the fold
    lock). ``live_since`` is the oldest bucket Redis still keeps: older
    changes go to history only.

    A pair or shift whose lock another worker holds is not waited for: it is
    returned, for ``settle_deferred`` to recompute in a transaction of its own
    once this one has committed, before the entries are acknowledged. The
    pairs of every event of the batch are recomputed, not only of those new to
    history: a batch redelivered after a crash between the two transactions
    settles what the first one left. Recomputing a pair changes nothing when
    nothing changed.
    """
    share_fold_lock(connection)
    inserted = insert_events(connection, batch)
    facts = [
        Fact((stored.source, stored.id), stored.type, stored.site_id, stored.time, stored.data)
        for stored in _first_of_each(batch)
    ]
    new = [fact for fact in facts if fact.key in inserted]
    deltas = Deltas()
    for fact in new:
        if fact.type == "delivery.attempted":
            for name, value in metrics.attempt_fields(fact.data, fact.time).items():
                deltas.add(fact.site_id, fact.time, name, value)
    pairs = PairKeys.of(facts)
    shift_workers = {fact.data["worker_id"] for fact in facts if fact.type in SHIFT_TYPES}
    busy = _try_lock_pairs(connection, pairs.lock_names() | {_shift_lock(worker) for worker in shift_workers})
    free_pairs, busy_pairs = pairs.split(busy)
    busy_workers = {worker for worker in shift_workers if _shift_lock(worker) in busy}
    _update_samples(connection, free_pairs, deltas, new)
    _update_shifts(connection, shift_workers - busy_workers, deltas)
    update_state(connection, new)
    # Every batch writes the same few minute rows and site rows: last, so
    # that a concurrent worker waits for them no longer than our commit.
    _write_rollups(connection, deltas)
    _touch_sites(connection, new)
    return _outbox(connection, deltas, live_since), Deferred(busy_pairs, busy_workers)


def settle_deferred(connection: sa.Connection, deferred: Deferred, live_since: datetime) -> Outbox | None:
    """Recompute, under their locks, the pairs and shifts a batch deferred; return the live outbox row, if any.

    Runs in a transaction of its own that has taken no other lock but the
    shared fold lock: it waits here for the workers that held them to commit
    (they hold the fold lock already, so a fold waiting for it cannot stand
    between), and then sees their halves.
    """
    share_fold_lock(connection)
    _lock_pairs(connection, deferred.lock_names())
    deltas = Deltas()
    _update_samples(connection, deferred.pairs, deltas)
    _update_shifts(connection, deferred.shift_workers, deltas)
    _write_rollups(connection, deltas)
    return _outbox(connection, deltas, live_since)


def _shift_lock(worker: str) -> str:
    return f"shift:{worker}"


def _outbox(connection: sa.Connection, deltas: Deltas, live_since: datetime) -> Outbox | None:
    payload = deltas.live_payload(live_since)
    if not (payload["incr"] or payload["shifts"]):
        return None
    outbox_id = connection.execute(
        live_outbox.insert().values(created_at=datetime.now(UTC), deltas=payload).returning(live_outbox.c.id)
    ).scalar_one()
    return outbox_id, payload


def _first_of_each(batch: Sequence[StoredEvent]) -> list[StoredEvent]:
    """Return the first entry of each event (source, id) in the batch, in order."""
    chosen: dict[Key, StoredEvent] = {}
    for stored in batch:
        chosen.setdefault((stored.source, stored.id), stored)
    return list(chosen.values())


def _matching(
    connection: sa.Connection, query: sa.Select, columns: Sequence[sa.Column], keys: list[tuple]
) -> sa.Select:
    """Restrict ``query`` to the rows whose ``columns`` equal one of ``keys``.

    On PostgreSQL the keys travel as one JSON array of arrays, joined as a
    derived table: one cheap plan whatever their number, each key looked up
    by index (a long row-value IN list costs milliseconds to plan). SQLite
    takes the IN list.
    """
    if connection.dialect.name != "postgresql":
        return query.where(sa.tuple_(*columns).in_(keys))
    # Strings as text, not the column's varchar(n): a cast to varchar(n) would cut a longer key to match.
    fields = ", ".join(
        f"CAST(k ->> {i} AS {'integer' if isinstance(column.type, sa.Integer) else 'text'}) AS {column.name}"
        for i, column in enumerate(columns)
    )
    # Through an array, for the planner: it guesses 10 elements in an array
    # it cannot see but 100 rows from a JSON function, and at 100 a small
    # history is scanned whole and hashed instead of probed key by key.
    wanted = (
        sa.text(f"SELECT {fields} FROM unnest(ARRAY(SELECT jsonb_array_elements(CAST(:keys AS jsonb)))) AS k")
        .bindparams(keys=_json_list(keys))
        .columns(*(sa.column(column.name, column.type) for column in columns))
        .subquery("wanted")
    )
    return query.join(wanted, sa.and_(*(column == wanted.c[column.name] for column in columns)))


def _of_types(types: tuple[str, ...]) -> Any:
    """Restrict events to ``types``, written into the SQL rather than bound.

    psycopg prepares a statement that runs often, and PostgreSQL then plans it
    once for any parameters: with the types bound, it cannot know that a
    partial index on those types applies, and it may read every event of
    those types for each key (50 ms a batch at 100,000 events, and growing).
    Written out, each key is one probe of its index.
    """
    return events.c.type.in_(sa.bindparam("pair_types", list(types), expanding=True, literal_execute=True))


def _group_facts(
    connection: sa.Connection, column: sa.Column, keys: set[str], types: tuple[str, ...], skip_new: bool = False
) -> list[Fact]:
    if not keys:
        return []
    query = _pair_query(types, skip_new)
    # .all(): the driver fetches every row at once; iterating the result fetches them one by one.
    rows = connection.execute(_matching(connection, query, (column,), [(key,) for key in sorted(keys)])).all()
    return [_fact(row) for row in rows]


def _pair_query(types: tuple[str, ...], skip_new: bool) -> sa.Select:
    """Select the pairing columns of events of ``types``; with ``skip_new``, not those this transaction inserted."""
    query = sa.select(*_PAIR_COLUMNS).where(_of_types(types))
    return query.where(_NOT_NEW) if skip_new else query


def _looked_up(fact: Fact) -> bool:
    """Tell whether the pair lookups would find ``fact``'s row: one of their types, a stop number its column holds."""
    return fact.type in _LOOKED_UP_TYPES and (fact.type not in _STOP_TYPES or stop_seq_column(fact.data) is not None)


def _dock_lock(route: str) -> str:
    return f"dock:{route}"


def _idle_lock(route: str, seq: int) -> str:
    """Name the gap before arriving at stop ``seq``: the departure from ``seq - 1`` is its other half."""
    return f"idle:{route}:{seq}"


def _ready_lock(order: str) -> str:
    return f"r2t:{order}"


_TRUCK_TYPES = ("truck.arrived", "truck.loading_started", "truck.departed")
_STOP_TYPES = ("stop.arrived", "stop.departed")
_LOOKED_UP_TYPES = frozenset(_TRUCK_TYPES + _STOP_TYPES + ORDER_PAIR_TYPES)
_NOT_NEW = sa.text("events.xmin <> pg_current_xact_id()::xid")  # PostgreSQL: rows not inserted by this transaction


@dataclass
class PairKeys:
    """The pairs a batch's new events can complete or change, as keys to look up.

    Only these anchors' samples are recomputed, from exactly the partners they
    need, so a batch reads a few rows per event instead of whole routes.
    """

    dock_routes: set[str] = field(default_factory=set)  # a truck's arrival or loading start: its dock wait
    departures: set[tuple[str, int]] = field(default_factory=set)  # (route, stop_seq); the truck leaves at 0
    arrivals: set[tuple[str, int]] = field(default_factory=set)  # (route, stop_seq) of stop arrivals
    orders: set[str] = field(default_factory=set)  # a packing or loading: its ready-to-truck time

    @classmethod
    def of(cls, new: Iterable[Fact]) -> PairKeys:
        """Return the keys the new events touch: each event's own pair, on either side."""
        keys = cls()
        for fact in new:
            data = fact.data
            if fact.type in ("truck.arrived", "truck.loading_started"):
                keys.dock_routes.add(data["route_id"])
            elif fact.type in ("truck.departed", "stop.departed"):
                seq = 0 if fact.type == "truck.departed" else data["stop_seq"]
                keys.departures.add((data["route_id"], seq))
                keys.arrivals.add((data["route_id"], seq + 1))
            elif fact.type == "stop.arrived":
                keys.arrivals.add((data["route_id"], data["stop_seq"]))
                keys.departures.add((data["route_id"], data["stop_seq"] - 1))
            elif fact.type in ORDER_PAIR_TYPES:
                keys.orders.add(data["order_id"])
        return keys

    def __bool__(self) -> bool:
        return bool(self.dock_routes or self.arrivals or self.orders)

    def lock_names(self) -> set[str]:
        """Name each pair these keys can make (a stop arrival names its gap): what a worker locks."""
        return (
            {_dock_lock(route) for route in self.dock_routes}
            | {_idle_lock(route, seq) for route, seq in self.arrivals}
            | {_idle_lock(route, seq + 1) for route, seq in self.departures}
            | {_ready_lock(order) for order in self.orders}
        )

    def split(self, busy: set[str]) -> tuple[PairKeys, PairKeys]:
        """Return these keys without the pairs named in ``busy``, and those pairs' keys."""
        if not busy:
            return self, PairKeys()
        free, taken = PairKeys(), PairKeys()
        for route in self.dock_routes:
            (taken if _dock_lock(route) in busy else free).dock_routes.add(route)
        for route, seq in self.arrivals:
            (taken if _idle_lock(route, seq) in busy else free).arrivals.add((route, seq))
        for route, seq in self.departures:
            (taken if _idle_lock(route, seq + 1) in busy else free).departures.add((route, seq))
        for order in self.orders:
            (taken if _ready_lock(order) in busy else free).orders.add(order)
        return free, taken

    def wants(self, fact: Fact) -> bool:
        """Tell whether a looked-up event is one half of a pair these keys name."""
        data = fact.data
        if fact.type in ("truck.arrived", "truck.loading_started"):
            return data["route_id"] in self.dock_routes
        if fact.type == "truck.departed":
            return (data["route_id"], 0) in self.departures
        if fact.type == "stop.departed":
            return (data["route_id"], data["stop_seq"]) in self.departures
        if fact.type == "stop.arrived":
            return (data["route_id"], data["stop_seq"]) in self.arrivals
        return data["order_id"] in self.orders

    def facts(self, connection: sa.Connection, new: Sequence[Fact] = ()) -> list[Fact]:
        """Look up every event these keys name, the batch's own included; ``new``: those this transaction stored.

        On PostgreSQL the lookups skip the rows this transaction inserted
        (their ``xmin`` is its id), and take them from ``new`` instead:
        reading back what the worker has in hand was half the rows fetched,
        and a fifth of its CPU. SQLite reads them back.
        """
        skip_new = connection.dialect.name == "postgresql"
        truck_routes = self.dock_routes | {route for route, seq in self.departures if seq == 0}
        # A stop number past the column's range is in no row: looking it up would only overflow.
        stop_keys = {(route, seq) for route, seq in self.departures | self.arrivals if seq <= STOP_SEQ_MAX}
        found = _group_facts(connection, events.c.route_id, truck_routes, _TRUCK_TYPES, skip_new)
        found += _group_facts(connection, events.c.order_id, self.orders, ORDER_PAIR_TYPES, skip_new)
        if stop_keys:
            query = _pair_query(_STOP_TYPES, skip_new)
            query = _matching(connection, query, (events.c.route_id, events.c.stop_seq), sorted(stop_keys))
            found += (_fact(row) for row in connection.execute(query).all())
        if skip_new:
            found += (fact for fact in new if _looked_up(fact))
        return [fact for fact in found if self.wants(fact)]


def _update_samples(connection: sa.Connection, keys: PairKeys, deltas: Deltas, new: Sequence[Fact] = ()) -> None:
    if not keys:
        return
    current = metrics.pair_samples(keys.facts(connection, new))
    if not current:
        return
    stored: dict[tuple[str, Key], float] = {}
    query = _matching(
        connection,
        sa.select(samples.c.kind, samples.c.source, samples.c.id, samples.c.value),
        (samples.c.kind, samples.c.source, samples.c.id),
        sorted((kind, source, id_) for kind, (source, id_) in current),
    )
    for row in connection.execute(query).all():
        stored[(row.kind, (row.source, row.id))] = row.value

    changed: list[dict[str, Any]] = []
    for key, sample in current.items():
        old = stored.get(key)
        if old is not None and old == sample.value:
            continue
        if old is not None:
            deltas.add(sample.site_id, sample.time, metrics.sample_field(sample.kind, old), -1)
        deltas.add(sample.site_id, sample.time, metrics.sample_field(sample.kind, sample.value), 1)
        changed.append(_sample_row(sample))
    _upsert(
        connection,
        samples,
        sorted(changed, key=lambda row: (row["kind"], row["source"], row["id"])),
        _sample_updates,
    )


def _sample_updates(x: Any) -> dict[str, Any]:
    return {"value": x.value}


def _sample_row(sample: Sample) -> dict[str, Any]:
    return {
        "kind": sample.kind,
        "source": sample.anchor[0],
        "id": sample.anchor[1],
        "group_key": sample.group_key,
        "site_id": sample.site_id,
        "time": sample.time,
        "value": sample.value,
    }


def _update_shifts(connection: sa.Connection, touched: set[str], deltas: Deltas) -> None:
    if not touched:
        return
    current = metrics.shift_intervals(_group_facts(connection, events.c.worker_id, touched, SHIFT_TYPES))
    stored: dict[Key, datetime | None] = {}
    query = sa.select(shifts.c.source, shifts.c.id, shifts.c.end).where(shifts.c.worker_id.in_(sorted(touched)))
    for row in connection.execute(query):
        stored[(row.source, row.id)] = aware(row.end) if row.end is not None else None
    changed = []
    for key, shift in current.items():
        if key in stored and stored[key] == shift.end:
            continue
        deltas.shifts[shift_key(key)] = [
            shift.site_id,
            shift.start.timestamp(),
            None if shift.end is None else shift.end.timestamp(),
            shift.hourly_cost,
        ]
        changed.append(
            {
                "source": key[0],
                "id": key[1],
                "worker_id": shift.worker_id,
                "site_id": shift.site_id,
                "start": shift.start,
                "end": shift.end,
                "hourly_cost": shift.hourly_cost,
            }
        )
    changed.sort(key=lambda row: (row["source"], row["id"]))
    _upsert(connection, shifts, changed, _shift_updates)


def _shift_updates(x: Any) -> dict[str, Any]:
    return {"end": x["end"]}


def _write_rollups(connection: sa.Connection, deltas: Deltas) -> None:
    """Add the changes to the sites' minute rows, and mark their hours for folding."""
    rows = [
        {"scope": site_id, "grain": "m", "bucket": minute, "field": name, "value": value}
        for (site_id, minute, name), value in sorted(deltas.minutes.items())
        if value != 0
    ]
    _upsert(connection, rollups, rows, _rollup_updates)
    _upsert(connection, rollups_unfolded, marks((row["scope"], truncate(row["bucket"], "h")) for row in rows), None)


def _rollup_updates(x: Any) -> dict[str, Any]:
    return {"value": rollups.c.value + x.value}


# -- current state ------------------------------------------------------------------

STAGES = {
    "order.created": "created",
    "order.picked": "picked",
    "order.packed": "packed",
    "order.loaded": "loaded",
    "order.canceled": "canceled",
}
STAGE_RANK = {"created": 0, "picked": 1, "packed": 2, "loaded": 3, "failed": 4, "delivered": 5, "canceled": 6}


def _stage(fact: Fact) -> str | None:
    if fact.type == "delivery.attempted":
        return "delivered" if fact.data["outcome"] == "delivered" else "failed"
    return STAGES.get(fact.type)


def _newer(table: sa.Table, excluded: Any, time_column: str, rank_column: str | None = None) -> Any:
    """Return a condition: the incoming row is newer than the stored one."""
    new_time, old_time = excluded[time_column], table.c[time_column]
    condition = sa.or_(old_time.is_(None), new_time > old_time)
    if rank_column is not None:
        condition = sa.or_(condition, sa.and_(new_time == old_time, excluded[rank_column] > table.c[rank_column]))
    return sa.and_(new_time.is_not(None), condition)


def _pick(condition: Any, new: Any, old: Any) -> Any:
    return sa.case((condition, new), else_=old)


def _later(new: Any, old: Any) -> Any:
    return sa.case((sa.or_(old.is_(None), new > old), new), else_=old)


def _earlier(new: Any, old: Any) -> Any:
    return sa.case((sa.or_(old.is_(None), new < old), new), else_=old)


# The events that move each current-state table, written once rather than per event.
_ORDER_STATE_TYPES = frozenset((*STAGES, "slot.changed", "delivery.attempted"))
_ROUTE_COLUMNS = {
    "truck.arrived": "arrived_at",
    "truck.loading_started": "loading_started_at",
    "truck.departed": "departed_at",
}
_WORKER_STATE_TYPES = frozenset((*SHIFT_TYPES, "worker.absent"))


def _merge_latest(target: dict[str, Any], time_key: str, fact_time: datetime, values: dict[str, Any]) -> None:
    current = target.get(time_key)
    if current is None or fact_time > current:
        target[time_key] = fact_time
        target.update(values)


def update_state(connection: sa.Connection, new: Sequence[Fact]) -> None:
    """Move the current-state tables to the newest event by event time."""
    order_rows: dict[str, dict[str, Any]] = {}
    dock_rows: dict[tuple[str, str], dict[str, Any]] = {}
    route_rows: dict[str, dict[str, Any]] = {}
    worker_rows: dict[str, dict[str, Any]] = {}
    for fact in new:
        data, when = fact.data, fact.time
        if fact.site_id == NETWORK:
            continue  # a network-wide mode.changed: no site's state
        if "order_id" in data and fact.type in _ORDER_STATE_TYPES:
            row = order_rows.setdefault(
                data["order_id"],
                {
                    "order_id": data["order_id"],
                    "site_id": fact.site_id,
                    "priority": None,
                    "created_at": None,
                    "promised_start": None,
                    "promised_end": None,
                    "promise_time": None,
                    "stage": None,
                    "stage_rank": None,
                    "stage_time": None,
                    "attempts": 0,
                },
            )
            if fact.type == "order.created":
                row["priority"] = data["priority"]
                row["created_at"] = when if row["created_at"] is None else min(row["created_at"], when)
            if fact.type in ("order.created", "slot.changed"):
                _merge_latest(
                    row,
                    "promise_time",
                    when,
                    {
                        "promised_start": metrics.parse_time(data["promised_start"]),
                        "promised_end": metrics.parse_time(data["promised_end"]),
                    },
                )
            if fact.type == "delivery.attempted":
                row["attempts"] += 1
            stage = _stage(fact)
            if stage is not None:
                rank = STAGE_RANK[stage]
                if row["stage_time"] is None or (when, rank) > (row["stage_time"], row["stage_rank"]):
                    row.update(stage=stage, stage_rank=rank, stage_time=when)
        elif fact.type == "dock.status_changed":
            row = dock_rows.setdefault(
                (fact.site_id, data["dock_id"]), {"site_id": fact.site_id, "dock_id": data["dock_id"]}
            )
            _merge_latest(row, "status_time", when, {"status": data["status"], "reason": data.get("reason")})
        if fact.type in _ROUTE_COLUMNS:
            row = route_rows.setdefault(
                data["route_id"],
                {
                    "route_id": data["route_id"],
                    "site_id": fact.site_id,
                    "dock_id": data["dock_id"],
                    "arrived_at": None,
                    "loading_started_at": None,
                    "departed_at": None,
                },
            )
            column = _ROUTE_COLUMNS[fact.type]
            row[column] = when if row[column] is None else max(row[column], when)
            if fact.type == "truck.arrived":
                row["dock_id"] = data["dock_id"]
        if fact.type in _WORKER_STATE_TYPES:
            row = worker_rows.setdefault(
                data["worker_id"],
                {
                    "worker_id": data["worker_id"],
                    "site_id": fact.site_id,
                    "role": None,
                    "shift_state": None,
                    "shift_time": None,
                    "absent_at": None,
                },
            )
            if "role" in data:
                row["role"] = data["role"]
            if fact.type == "worker.absent":
                row["absent_at"] = when if row["absent_at"] is None else max(row["absent_at"], when)
            else:
                state = "on" if fact.type == "worker.shift_started" else "off"
                _merge_latest(row, "shift_time", when, {"shift_state": state})
    _upsert_state(connection, order_rows, dock_rows, route_rows, worker_rows)


def _order_updates(x: Any) -> dict[str, Any]:
    promise_newer = _newer(orders, x, "promise_time")
    stage_newer = _newer(orders, x, "stage_time", "stage_rank")
    return {
        "priority": sa.func.coalesce(x.priority, orders.c.priority),
        "created_at": _earlier(x.created_at, orders.c.created_at),
        "promised_start": _pick(promise_newer, x.promised_start, orders.c.promised_start),
        "promised_end": _pick(promise_newer, x.promised_end, orders.c.promised_end),
        "promise_time": _pick(promise_newer, x.promise_time, orders.c.promise_time),
        "stage": _pick(stage_newer, x.stage, orders.c.stage),
        "stage_rank": _pick(stage_newer, x.stage_rank, orders.c.stage_rank),
        "stage_time": _pick(stage_newer, x.stage_time, orders.c.stage_time),
        "attempts": orders.c.attempts + x.attempts,
    }


def _dock_updates(x: Any) -> dict[str, Any]:
    newer = _newer(docks, x, "status_time")
    return {
        "status": _pick(newer, x.status, docks.c.status),
        "reason": _pick(newer, x.reason, docks.c.reason),
        "status_time": _pick(newer, x.status_time, docks.c.status_time),
    }


def _route_updates(x: Any) -> dict[str, Any]:
    return {
        "dock_id": sa.func.coalesce(x.dock_id, routes.c.dock_id),
        "arrived_at": _later(x.arrived_at, routes.c.arrived_at),
        "loading_started_at": _later(x.loading_started_at, routes.c.loading_started_at),
        "departed_at": _later(x.departed_at, routes.c.departed_at),
    }


def _worker_updates(x: Any) -> dict[str, Any]:
    newer = _newer(workers, x, "shift_time")
    return {
        "role": sa.func.coalesce(x.role, workers.c.role),
        "shift_state": _pick(newer, x.shift_state, workers.c.shift_state),
        "shift_time": _pick(newer, x.shift_time, workers.c.shift_time),
        "absent_at": _later(x.absent_at, workers.c.absent_at),
    }


def _upsert_state(
    connection: sa.Connection,
    order_rows: dict[str, dict[str, Any]],
    dock_rows: dict[tuple[str, str], dict[str, Any]],
    route_rows: dict[str, dict[str, Any]],
    worker_rows: dict[str, dict[str, Any]],
) -> None:
    _upsert(connection, orders, [order_rows[key] for key in sorted(order_rows)], _order_updates)
    _upsert(connection, docks, [dock_rows[key] for key in sorted(dock_rows)], _dock_updates)
    _upsert(connection, routes, [route_rows[key] for key in sorted(route_rows)], _route_updates)
    _upsert(connection, workers, [worker_rows[key] for key in sorted(worker_rows)], _worker_updates)


def _touch_sites(connection: sa.Connection, new: Sequence[Fact]) -> None:
    """Widen each site's span of event times to the batch's."""
    spans: dict[str, list[datetime]] = {}
    for fact in new:
        if fact.site_id != NETWORK:
            span = spans.setdefault(fact.site_id, [fact.time, fact.time])
            span[0], span[1] = min(span[0], fact.time), max(span[1], fact.time)
    _upsert(
        connection,
        sites,
        [
            {"site_id": site, "first_event_time": first, "last_event_time": last}
            for site, (first, last) in sorted(spans.items())
        ],
        _site_updates,
    )


def _site_updates(x: Any) -> dict[str, Any]:
    return {
        "first_event_time": _earlier(x.first_event_time, sites.c.first_event_time),
        "last_event_time": _later(x.last_event_time, sites.c.last_event_time),
    }
