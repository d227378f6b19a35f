"""The ingest worker: stream entries in, history rows out, exactly once in effect.

Each worker is one consumer of the ``ingest`` group. A step reads a batch
(its own unacknowledged entries first, then entries a dead worker left
behind, then new ones), commits them to history and only then acknowledges
them. A crash anywhere redelivers the batch, and the history's primary key on
(source, id) turns the redelivery into a no-op. Every 10 s, and at its first
step, its housekeeping also trims the stream, finishes the live outbox, and
folds the hours that batches marked into the hour and day rollups
(``dashboard.folding``): whichever worker comes first folds for all.

Failures are of two kinds. A store that cannot be reached (PostgreSQL down,
Redis down) is waited out with backoff and never counted against an event.
An entry that fails on its own (it cannot be decoded, the database refuses
its values) is counted; after ``max_tries`` it moves to the dead-letter
stream with its error, and the entries around it go on.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dashboard.aggregates import apply_batch, settle_deferred
from dashboard.db import live_outbox
from dashboard.events import CORRELATION_FIELDS
from dashboard.folding import fold_marked
from dashboard.history import StoredEvent, UndecodableEntry
from dashboard.live import LiveAggregates
from dashboard.stream import ACK, DEAD_LETTER, GROUP, Keys, ensure_group

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]

# Errors that say a store is unreachable or unusable as a whole, not that one
# event is bad: wait and retry, never dead-letter for them.
_DB_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.ProgrammingError, sa_exc.TimeoutError)
_DB_EVENT_ERRORS = (sa_exc.DataError, sa_exc.IntegrityError)
# Redis out of reach, or refusing writes as a whole: full (maxmemory with noeviction) or a read-only replica.
_REDIS_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
)
_HOUSEKEEPING_S = 10.0
_IDLE_CONSUMER_MS = 3600_000
_MAX_BACKOFF_S = 5.0


def consumer_name() -> str:
    """Return a name unique to this worker process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class IngestWorker:
    """One consumer in the ingest group, writing history with PostgreSQL or SQLite."""

    def __init__(
        self,
        client: redis.Redis,
        engine: sa.Engine,
        keys: Keys,
        *,
        batch: int = 500,
        block_ms: int = 1000,
        claim_idle_ms: int = 15_000,
        max_tries: int = 5,
        stream_retention_s: int = 600,
        live_retention_s: int = 48 * 3600,
        name: str | None = None,
    ) -> None:
        self.name = name or consumer_name()
        self._client = client
        self._engine = engine
        self._keys = keys
        self._batch = batch
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._max_tries = max_tries
        self._retention_ms = stream_retention_s * 1000
        self._live = LiveAggregates(client, keys, live_retention_s)
        self._ack = client.register_script(ACK)
        self._dead_letter = client.register_script(DEAD_LETTER)
        self._own_pending = True  # a restarted consumer name has none, but look once
        self._next_claim = 0.0
        self._next_housekeeping = 0.0
        self._backoff_s = 0.0
        self._applied: list[int] = []  # outbox rows applied to Redis, deleted with the next commit
        self.processed = 0

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set; survive store outages."""
        log.info("worker_started", extra={"consumer": self.name, "stream": self._keys.stream})
        while not stop.is_set():
            try:
                self.step()
                self._backoff_s = 0.0
            except _REDIS_UNAVAILABLE as error:
                self._own_pending = True
                self._wait_out("redis", error, stop)
            except _DB_UNAVAILABLE as error:
                self._own_pending = True
                self._wait_out("database", error, stop)
            except redis.ResponseError as error:
                if "NOGROUP" in str(error) or "UNBLOCKED" in str(error):
                    # The stream or its group vanished (Redis flushed or restarted
                    # empty): make them again and go on; `rebuild` restores the figures.
                    log.warning("stream_recreated", extra={"consumer": self.name, "error": str(error)})
                    ensure_group(self._client, self._keys)
                else:
                    self._survive_bug(stop)
            except Exception:
                self._survive_bug(stop)
        log.info("worker_stopped", extra={"consumer": self.name, "processed": self.processed})

    def _survive_bug(self, stop: threading.Event) -> None:
        # A bug, not an outage (a script Redis refuses included): say so
        # loudly, keep the entries pending, back off and go on.
        log.exception("worker_step_failed", extra={"consumer": self.name})
        self._own_pending = True
        self._backoff_s = min(_MAX_BACKOFF_S, max(0.1, self._backoff_s * 2))
        stop.wait(self._backoff_s)

    def _wait_out(self, store: str, error: Exception, stop: threading.Event) -> None:
        self._backoff_s = min(_MAX_BACKOFF_S, max(0.1, self._backoff_s * 2))
        log.warning(
            "store_unavailable",
            extra={
                "store": store,
                "consumer": self.name,
                "error": str(error).splitlines()[0] if str(error) else repr(error),
                "retry_in_s": self._backoff_s,
                "hint": "entries stay pending in the stream; the worker retries on its own",
            },
        )
        stop.wait(self._backoff_s)

    def step(self) -> int:
        """Read one batch and process it; return how many entries were acknowledged."""
        now = time.monotonic()
        if now >= self._next_housekeeping:
            ensure_group(self._client, self._keys)
            self._housekeeping()
            self.tidy()
            self._next_housekeeping = now + _HOUSEKEEPING_S
        entries = self._read()
        if not entries:
            return 0
        return self.process(entries)

    def _read(self) -> list[Entry]:
        if self._own_pending:
            entries = self._xreadgroup("0")
            if entries:
                return entries
            self._own_pending = False
        if time.monotonic() >= self._next_claim:
            entries = self._claim_stale()
            if entries:
                return entries
            self._next_claim = time.monotonic() + self._claim_idle_ms / 2000
        return self._xreadgroup(">", block_ms=self._block_ms)

    def _xreadgroup(self, last_id: str, block_ms: int | None = None) -> list[Entry]:
        reply = self._client.xreadgroup(
            GROUP, self.name, {self._keys.stream: last_id}, count=self._batch, block=block_ms
        )
        # Entries trimmed while pending come back with no fields; nothing to do.
        return [(entry_id, fields) for _, entries in reply or () for entry_id, fields in entries if fields]

    def _claim_stale(self) -> list[Entry]:
        _, entries, _deleted = self._client.xautoclaim(
            self._keys.stream, GROUP, self.name, self._claim_idle_ms, "0-0", count=self._batch
        )
        if entries:
            log.info("entries_reclaimed", extra={"consumer": self.name, "count": len(entries)})
            # Claimed entries are now ours: retry them first if this batch fails.
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def process(self, entries: Sequence[Entry]) -> int:
        """Commit the entries' events to history, then acknowledge them."""
        good: list[StoredEvent] = []
        for entry_id, fields in entries:
            try:
                good.append(StoredEvent.from_entry(entry_id, fields))
            except UndecodableEntry as error:
                self._fail(entry_id, fields, error)
        if not good:
            return 0
        try:
            self._commit(good)
        except _DB_EVENT_ERRORS as error:
            self._own_pending = True
            return self._commit_in_halves(good, error)
        except BaseException:
            self._own_pending = True
            raise
        acked = self._acknowledge([stored.stream_id for stored in good])
        log.debug("batch_committed", extra={"consumer": self.name, "entries": len(good), "acked": acked})
        return acked

    def _commit(self, batch: Sequence[StoredEvent]) -> None:
        """Commit the batch to history, then carry its rollup deltas to Redis."""
        live_since = datetime.now(UTC) - timedelta(seconds=self._live.retention_s)
        applied = list(self._applied)
        with self._engine.begin() as connection:
            outbox, deferred = apply_batch(connection, batch, live_since)
            _forget_outbox(connection, applied)  # the rows earlier batches applied: no commit of their own
        del self._applied[: len(applied)]
        if outbox is not None:
            self._apply_live(*outbox)
        if deferred:
            # Pairs another worker was computing: recomputed once it has committed,
            # before this batch is acknowledged, so that 'processed' means final.
            with self._engine.begin() as connection:
                outbox = settle_deferred(connection, deferred, live_since)
            if log.isEnabledFor(logging.DEBUG):  # naming the locks again costs a string per pair
                log.debug("pairs_settled", extra={"consumer": self.name, "locks": len(deferred.lock_names())})
            if outbox is not None:
                self._apply_live(*outbox)

    def _apply_live(self, outbox_id: int, payload: dict[str, Any]) -> None:
        # Applied at most once (a marker per outbox row); a row left behind by
        # a crash here is applied by housekeeping, and rebuild skips it.
        if self._live.apply(outbox_id, payload) >= 0:
            self._applied.append(outbox_id)

    def tidy(self) -> None:
        """Finish what batches leave to housekeeping: outbox rows, shifts out of every window, hours to fold."""
        self.flush_applied()
        self.drain_outbox()
        self._live.prune_shifts(datetime.now(UTC) - timedelta(seconds=self._live.retention_s))
        fold_marked(self._engine)

    def flush_applied(self) -> None:
        """Delete the outbox rows already applied to Redis (when no batch comes to do it)."""
        if self._applied:
            applied = list(self._applied)
            with self._engine.begin() as connection:
                _forget_outbox(connection, applied)
            del self._applied[: len(applied)]

    def drain_outbox(self, older_than_s: float = 5.0) -> int:
        """Apply outbox rows that their worker left behind; return how many."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        query = sa.select(live_outbox.c.id, live_outbox.c.deltas).where(live_outbox.c.created_at < cutoff)
        if self._engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with self._engine.begin() as connection:
            rows = connection.execute(query.order_by(live_outbox.c.id).limit(100)).all()
        for row in rows:
            self._apply_live(row.id, row.deltas)
        return len(rows)

    def _commit_in_halves(self, batch: Sequence[StoredEvent], error: Exception) -> int:
        """Commit what the database accepts of a batch it refused with ``error``, half by half.

        The events it refuses alone are failed (dead-lettered at their last
        try); the others are committed in order and acknowledged. One bad
        event among n costs about 2 log2(n) commits, not n.
        """
        if len(batch) == 1:
            stored = batch[0]
            self._fail(stored.stream_id.encode(), {b"e": stored.payload}, error, stored)
            return 0
        acked = 0
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            try:
                self._commit(half)
            except _DB_EVENT_ERRORS as refused:
                acked += self._commit_in_halves(half, refused)
                continue
            acked += self._acknowledge([stored.stream_id for stored in half])
        return acked

    def _acknowledge(self, stream_ids: list[str]) -> int:
        second = int(time.time())
        acked = int(
            self._ack(
                keys=[self._keys.stream, self._keys.stats, self._keys.failures, self._keys.rate("processed", second)],
                args=[GROUP, *stream_ids],
            )
        )
        self.processed += acked
        return acked

    def _fail(
        self,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        error: Exception,
        stored: StoredEvent | None = None,
    ) -> None:
        """Count a failed try of one entry; dead-letter it after max_tries."""
        self._own_pending = True
        tries = int(self._client.hincrby(self._keys.failures, entry_id, 1))
        context = {
            "consumer": self.name,
            "entry_id": entry_id.decode(),
            "tries": tries,
            "error": str(error).splitlines()[0],
        }
        if stored is not None:
            context.update(event_id=stored.id, source=stored.source, site_id=stored.site_id)
            # The order, route, worker... it concerns: what an operator searches the logs by.
            ids = zip(CORRELATION_FIELDS, stored.correlation, strict=True)
            context.update((name, value) for name, value in ids if value)
        if tries < self._max_tries:
            log.warning("entry_failed", extra=context)
            return
        fields_json = orjson.dumps({k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()})
        self._dead_letter(
            keys=[self._keys.stream, self._keys.stats, self._keys.failures, self._keys.dead],
            args=[GROUP, entry_id, fields_json, context["error"], tries],
        )
        log.error("entry_dead_lettered", extra={**context, "dead_letter_stream": self._keys.dead})

    def _housekeeping(self) -> None:
        """Trim entries every group has acknowledged; drop long-idle empty consumers."""
        safe = _id_tuple(f"{int(time.time() * 1000) - self._retention_ms}-0")
        for group in self._client.xinfo_groups(self._keys.stream):
            safe = min(safe, _id_tuple(group["last-delivered-id"]))
            summary = self._client.xpending(self._keys.stream, group["name"])
            if summary["pending"]:
                safe = min(safe, _id_tuple(summary["min"]))
        self._client.xtrim(self._keys.stream, minid=f"{safe[0]}-{safe[1]}", approximate=False)
        for consumer in self._client.xinfo_consumers(self._keys.stream, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > _IDLE_CONSUMER_MS:
                self._client.xgroup_delconsumer(self._keys.stream, GROUP, consumer["name"])


def _forget_outbox(connection: sa.Connection, outbox_ids: list[int]) -> None:
    if outbox_ids:
        connection.execute(live_outbox.delete().where(live_outbox.c.id.in_(outbox_ids)))


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
