"""Hour and day rollups, folded from the minutes by a periodic job instead of rewritten by every batch.

A worker adds a batch's changes to its sites' minute rows only, and marks
each (site, hour) it changed in ``rollups_unfolded``. ``fold_marked``, run
by the workers' housekeeping, then rewrites for the marked hours (the oldest
first, a chunk per transaction) each site's hour rows from its minutes, its
day rows from its hours, and the network's hour and day rows from its
sites'. Whether folded or not, two things always hold:

- a stored day row is the sum of its stored hour rows, and a network row the
  sum of its sites' rows, since a fold rewrites them together;
- a stored hour row lacks only changes to its minutes made since its last
  fold, and such an hour is marked.

So a reader adds, for each marked hour its range covers with stored hour or
day rows, that hour's minutes minus its stored hour row
(``unfolded_changes``), in the same statement and so the same snapshot:
exact answers, however long ago the last fold ran.

On PostgreSQL a worker holds the fold lock shared for its whole transaction,
taken first (``share_fold_lock``), and ``fold`` holds it exclusively. Without
it, a worker that found its hour already marked could commit its minutes
after a fold had read them and removed the mark, and that change would never
reach the hour rows. SQLite serializes writers on its own.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dashboard.db import rollups, rollups_unfolded

log = logging.getLogger(__name__)

NETWORK = "*"
FOLD_LOCK = 0x666F6C64  # "fold": the advisory lock workers share and a fold takes alone
# How long a fold waits for the transactions in flight; workers that start meanwhile wait behind it.
FOLD_LOCK_TIMEOUT_MS = 1000
# Marked hours per fold transaction (0.33 to 0.39 s of workers held back, measured on 90 days of history),
# and how long one housekeeping may go on folding chunks.
FOLD_CHUNK = 200
FOLD_BUDGET_S = 5.0
_LOCK_NOT_AVAILABLE = "55P03"

# Set-based, in both dialects. Each marked hour is rewritten from its
# minutes, each marked day from its hours, then the network's marked hours
# and days from its sites' (the ``sites`` table lists them, so that every
# lookup starts with a scope and uses the primary key). A fold takes the
# marks of the hours up to ``:through`` (see ``fold``).
_MARKED = "(SELECT * FROM rollups_unfolded WHERE hour <= :through)"
_NETWORK_MARKED = f"SELECT 'h' AS grain, hour AS bucket FROM {_MARKED} h UNION SELECT 'd', day FROM {_MARKED} d"


def _each(dialect: str, condition: str) -> str:
    """Join, to each row on its left, the rollup rows ``r`` that ``condition`` finds by their primary key.

    On PostgreSQL a LATERAL subquery that OFFSET 0 keeps the planner from
    flattening: each mark then probes the key for its own range. A plain
    join is planned from the statistics of ``rollups_unfolded``, always stale
    (a fold empties it, workers fill it again in seconds): planned for one
    mark, it reads every minute of the site once per mark, a cost that grows
    with history (measured: 1.7 s for 107 marked hours of 90 days, against
    0.1 s). SQLite probes the index per row on its own, and has no LATERAL.
    """
    if dialect == "postgresql":
        return f"CROSS JOIN LATERAL (SELECT r.field, r.value FROM rollups r WHERE {condition} OFFSET 0) r"
    return f"JOIN rollups r ON {condition}"


@functools.cache
def fold_statements(dialect: str) -> tuple[sa.TextClause, ...]:
    """Return the statements of a fold in ``dialect``, in the order they run (see ``fold``)."""
    minutes = _each(dialect, "r.scope = u.site_id AND r.grain = 'm' AND r.bucket >= u.hour AND r.bucket < u.hour_end")
    hours = _each(dialect, "r.scope = d.site_id AND r.grain = 'h' AND r.bucket >= d.day AND r.bucket < d.day_end")
    sites = _each(dialect, "r.scope = s.site_id AND r.grain = m.grain AND r.bucket = m.bucket")
    # Each sum replaces the row it differs from, in place: no row deleted and written again
    # (dead rows, new index entries, rows moved away from their neighbours), and most rows of a
    # marked hour did not change. "WHERE true" tells SQLite's parser that ON CONFLICT is the upsert's.
    upsert = "ON CONFLICT (scope, grain, bucket, field) DO UPDATE SET value = excluded.value "
    upsert += "WHERE rollups.value <> excluded.value"
    statements = (
        "INSERT INTO rollups (scope, grain, bucket, field, value) "
        f"SELECT u.site_id, 'h', u.hour, r.field, sum(r.value) FROM {_MARKED} u {minutes} WHERE true "
        f"GROUP BY u.site_id, u.hour, r.field {upsert}",
        "INSERT INTO rollups (scope, grain, bucket, field, value) "
        "SELECT d.site_id, 'd', d.day, r.field, sum(r.value) "
        f"FROM (SELECT DISTINCT site_id, day, day_end FROM {_MARKED} u) d {hours} WHERE true "
        f"GROUP BY d.site_id, d.day, r.field {upsert}",
        "INSERT INTO rollups (scope, grain, bucket, field, value) "
        f"SELECT '*', m.grain, m.bucket, r.field, sum(r.value) FROM ({_NETWORK_MARKED}) m CROSS JOIN sites s {sites} "
        f"WHERE true GROUP BY m.grain, m.bucket, r.field {upsert}",
    )
    # Bound as the column's type: SQLite compares the text SQLAlchemy stored, not what its driver would write.
    through = sa.bindparam("through", type_=rollups_unfolded.c.hour.type)
    return tuple(sa.text(statement).bindparams(through) for statement in statements)


@dataclass(frozen=True)
class FoldReport:
    """What a fold did."""

    hours: int  # marked (site, hour) pairs folded
    chunks: int  # transactions it took
    seconds: float


def share_fold_lock(connection: sa.Connection) -> None:
    """Hold the fold lock shared until the transaction ends: call it before the transaction's first write."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({FOLD_LOCK})")


def marks(hours: Iterable[tuple[str, datetime]]) -> list[dict[str, Any]]:
    """Return the ``rollups_unfolded`` rows of (site, hour start) pairs, in key order."""
    rows = []
    for site_id, hour in sorted(set(hours)):
        day = hour.replace(hour=0)
        rows.append(
            {
                "site_id": site_id,
                "hour": hour,
                "hour_end": hour + timedelta(hours=1),
                "day": day,
                "day_end": day + timedelta(days=1),
            }
        )
    return rows


def fold(connection: sa.Connection, chunk: int = FOLD_CHUNK) -> tuple[int, bool]:
    """Fold the oldest marked hours into their hour and day rows, the network's included, and clear their marks.

    Takes the hours up to the ``chunk``-th oldest mark, every site's marks
    of those hours included, and returns how many marks it cleared and
    whether newer ones wait. Runs in the caller's transaction. On PostgreSQL
    it first waits for the workers' transactions in flight, at most
    ``FOLD_LOCK_TIMEOUT_MS``, then raises the driver's lock-timeout error
    (see ``fold_marked``).

    Whatever the chunk, a day row stays the sum of its stored hour rows and a
    network row the sum of its sites' stored rows: the hours left marked are
    corrected by readers as before.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {FOLD_LOCK_TIMEOUT_MS}")
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({FOLD_LOCK})")
    marked = rollups_unfolded.c
    oldest = sa.select(marked.hour).order_by(marked.hour).limit(chunk).subquery()
    through = connection.execute(sa.select(sa.func.max(oldest.c.hour))).scalar_one()
    if through is None:
        return 0, False
    # On SQLite the first of these writes holds the database until commit: no worker writes meanwhile.
    for statement in fold_statements(connection.dialect.name):
        connection.execute(statement, {"through": through})
    hours = connection.execute(rollups_unfolded.delete().where(marked.hour <= through)).rowcount
    newer = connection.execute(sa.select(sa.exists().where(marked.hour > through))).scalar_one()
    return hours, newer


def fold_marked(engine: sa.Engine, chunk: int = FOLD_CHUNK) -> FoldReport | None:
    """Fold chunk by chunk, each in a transaction of its own, for at most ``FOLD_BUDGET_S``.

    Between chunks the workers go on: a backfill that marked thousands of
    hours holds them back ``chunk`` hours at a time, not for the whole fold.
    Return None when the workers held the lock too long before anything was
    folded (the next housekeeping tries again).
    """
    started = time.monotonic()
    hours = chunks = 0
    newer = True
    while newer and time.monotonic() - started < FOLD_BUDGET_S:
        try:
            with engine.begin() as connection:
                folded, newer = fold(connection, chunk)
        except sa_exc.OperationalError as error:
            if getattr(error.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            log.info(
                "fold_postponed",
                extra={"reason": "workers' transactions held the fold lock", "wait_ms": FOLD_LOCK_TIMEOUT_MS},
            )
            if not chunks:
                return None
            break
        hours += folded
        chunks += 1
    report = FoldReport(hours, chunks, round(time.monotonic() - started, 3))
    if hours:
        log.info("rollups_folded", extra={**report.__dict__, "more_waiting": newer})
    return report


def unfolded_changes(
    dialect: str,
    grain: str,
    ranges: Sequence[tuple[datetime, datetime]],
    site_ids: Sequence[str] | None,
    as_network: bool = False,
) -> list[sa.Select]:
    """Return what stored rows of ``grain`` ("h" or "d") lack in ``ranges``: the changes not yet folded.

    Two selects of (scope, bucket, field, value), to add to the stored rows
    with UNION ALL: the minutes of each marked hour whose ``grain`` bucket
    starts in one of ``ranges``, and its stored hour row negated. Only the
    marks of ``site_ids`` count (None: every site). Scope is the marked site,
    or NETWORK with ``as_network``; bucket is the hour's bucket at ``grain``.
    ``dialect`` is the connection's: on PostgreSQL each mark probes the key
    on its own (see ``_each``).
    """
    if not ranges:
        return []
    marked = rollups_unfolded.c
    bucket = marked.hour if grain == "h" else marked.day
    scope = sa.literal(NETWORK, sa.String) if as_network else marked.site_id
    where = [sa.or_(*(sa.and_(bucket >= first, bucket < stop) for first, stop in ranges))]
    if site_ids is not None:
        where.append(marked.site_id.in_(site_ids))

    def rows(condition: Any, value: Any) -> sa.Select:
        matching = sa.and_(rollups.c.scope == marked.site_id, condition)
        if dialect == "postgresql":
            found = sa.select(rollups.c.field, value.label("value")).where(matching).offset(0).lateral()
            source, field, amount = rollups_unfolded.join(found, sa.true()), found.c.field, found.c.value
        else:
            source, field, amount = rollups_unfolded.join(rollups, matching), rollups.c.field, value
        columns = (scope.label("scope"), bucket.label("bucket"), field.label("field"), amount.label("value"))
        return sa.select(*columns).select_from(source).where(*where)

    minutes = rows(
        sa.and_(rollups.c.grain == "m", rollups.c.bucket >= marked.hour, rollups.c.bucket < marked.hour_end),
        rollups.c.value,
    )
    stale_hour = rows(sa.and_(rollups.c.grain == "h", rollups.c.bucket == marked.hour), -rollups.c.value)
    return [minutes, stale_hour]
