"""Live aggregates in Redis: minute and hour hashes of rollup fields, per scope.

A hash ``{prefix}:live:{scope}:{grain}:{bucket epoch}`` holds the same fields
as the history rollups (see ``dashboard.metrics``) and expires ``retention``
after its bucket starts, so memory stays bounded. Workers apply each
committed batch's deltas through the outbox with one Lua script that first
sets a marker for the outbox row: applying a row twice changes nothing.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa

from dashboard.aggregates import LIVE_GRAINS, NETWORK, aware, shift_key, truncate
from dashboard.db import live_outbox, rollups, shifts
from dashboard.metrics import Fields, Shift
from dashboard.stream import Keys

log = logging.getLogger(__name__)
_REBUILD_LOCK_S = 600

MARKER_TTL_S = 24 * 3600

# KEYS: marker, rebuild lock, shifts hash.
# ARGV: marker ttl, n hashes, then for each: its full key, its expiry epoch,
# n fields and (field, increment) pairs; then n shifts and (key, json) pairs.
# Returns 1 applied, 0 already applied, -1 rebuild running.
APPLY = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local key, fields = ARGV[i], tonumber(ARGV[i + 2])
  for f = 1, fields do
    redis.call('HINCRBYFLOAT', key, ARGV[i + 1 + 2 * f], ARGV[i + 2 + 2 * f])
  end
  redis.call('EXPIREAT', key, ARGV[i + 1])
  i = i + 3 + 2 * fields
end
local shifts = tonumber(ARGV[i]); i = i + 1
for _ = 1, shifts do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 1
"""


class LiveAggregates:
    """Apply outbox payloads to Redis and read window fields back."""

    def __init__(self, client: redis.Redis, keys: Keys, retention_s: int) -> None:
        self._client = client
        self._keys = keys
        self.retention_s = retention_s
        self._apply = client.register_script(APPLY)

    def apply(self, outbox_id: int, payload: dict[str, Any]) -> int:
        """Apply one outbox row's deltas once; return 1, 0 (done before) or -1 (rebuild running)."""
        # One hash takes many fields from a batch: grouped, each hash's key and expiry go once.
        hashes: dict[tuple[str, str, int], list[str]] = defaultdict(list)
        for scope, grain, epoch, name, value in payload["incr"]:
            hashes[(scope, grain, epoch)] += (name, repr(float(value)))
        args: list[Any] = [MARKER_TTL_S, len(hashes)]
        for (scope, grain, epoch), fields in hashes.items():
            args += [self._keys.live_hash(scope, grain, epoch), epoch + self.retention_s, len(fields) // 2, *fields]
        args.append(len(payload["shifts"]))
        for key, value in payload["shifts"].items():
            args += [key, json.dumps(value)]
        marker = self._keys.live_marker(f"{outbox_id}:{payload['nonce']}")
        keys = [marker, self._keys.rebuild_lock, self._keys.shifts]
        return int(self._apply(keys=keys, args=args))

    def fields(self, scope: str, pieces: Iterable[tuple[str, datetime]]) -> Fields:
        """Return the summed fields of the given (grain, bucket) hashes of a scope."""
        pipe = self._client.pipeline(transaction=False)
        for grain, bucket in pieces:
            pipe.hgetall(self._keys.live_hash(scope, grain, int(bucket.timestamp())))
        totals: dict[str, float] = defaultdict(float)
        for mapping in pipe.execute():
            for name, value in mapping.items():
                totals[name.decode()] += float(value)
        return dict(totals)

    def shifts(self, site_id: str | None) -> list[Shift]:
        """Return the shifts of the retention window (all sites, or one), open ones included."""
        found = []
        for key, value in self._client.hgetall(self._keys.shifts).items():
            site, start, end, cost = json.loads(value)
            if site_id is None or site == site_id:
                source, event_id = json.loads(key)
                end_time = None if end is None else datetime.fromtimestamp(end, UTC)
                found.append(Shift((source, event_id), "", site, datetime.fromtimestamp(start, UTC), end_time, cost))
        return found

    def prune_shifts(self, before: datetime) -> int:
        """Forget shifts that ended before ``before`` (out of every live window); return how many."""
        cutoff = before.timestamp()
        stale = [
            key
            for key, value in self._client.hgetall(self._keys.shifts).items()
            if (end := json.loads(value)[2]) is not None and end < cutoff
        ]
        if stale:
            self._client.hdel(self._keys.shifts, *stale)
        return len(stale)

    def memory_bytes(self) -> int:
        """Return the memory the live hashes use (sampled with MEMORY USAGE)."""
        total = 0
        for key in self._client.scan_iter(match=f"{self._keys.live}*", count=1000):
            total += self._client.memory_usage(key, samples=0) or 0
        return total


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild wrote."""

    hashes: int
    fields: int
    shifts: int
    outbox_rows_folded: int
    seconds: float


class RebuildRunning(RuntimeError):
    """Another rebuild holds the lock."""


def rebuild(client: redis.Redis, engine: sa.Engine, keys: Keys, retention_s: int) -> RebuildReport:
    """Recompute the live hashes from history's rollups, while ingest goes on.

    Workers do not apply outbox rows while the rebuild lock is held. In one
    transaction that holds off new outbox rows, the rebuild reads the sites'
    minute rollups (they make the hours and the network's rows, summed here:
    history's hour rows may wait for their fold) and deletes the outbox rows
    they already include; rows committed after it are applied once it
    releases the lock. So nothing is counted twice, and nothing is missed.
    """
    started = time.monotonic()
    token = secrets.token_hex(8)
    if not client.set(keys.rebuild_lock, token, nx=True, ex=_REBUILD_LOCK_S):
        raise RebuildRunning("a rebuild is already running (lock held); wait for it or for the lock to expire")
    try:
        since = datetime.now(UTC) - timedelta(seconds=retention_s)
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("LOCK TABLE live_outbox IN EXCLUSIVE MODE"))
            # (On SQLite this first write takes the database lock until commit.)
            folded = connection.execute(live_outbox.delete()).rowcount
            rows = connection.execute(
                sa.select(rollups).where(rollups.c.grain == "m", rollups.c.bucket >= truncate(since, "h"))
            ).all()
            shift_rows = connection.execute(
                sa.select(shifts).where(sa.or_(shifts.c["end"].is_(None), shifts.c["end"] >= since))
            ).all()
        log.info(
            "rebuild_read", extra={"rollup_rows": len(rows), "shifts": len(shift_rows), "outbox_rows_folded": folded}
        )
        hashes: dict[str, dict[str, float]] = defaultdict(dict)
        expiry: dict[str, int] = {}
        for row in rows:
            if row.scope == NETWORK:
                continue  # a network minute an older version stored: the sites' rows make it
            minute = aware(row.bucket)
            for grain in LIVE_GRAINS:
                epoch = int(truncate(minute, grain).timestamp())
                for scope in (row.scope, NETWORK):
                    key = keys.live_hash(scope, grain, epoch)
                    hashes[key][row.field] = hashes[key].get(row.field, 0.0) + row.value
                    expiry[key] = epoch + retention_s
        for stale in list(client.scan_iter(match=f"{keys.live}*", count=1000)):
            client.delete(stale)
        client.delete(keys.shifts)
        pipe = client.pipeline(transaction=False)
        for number, (key, mapping) in enumerate(hashes.items(), 1):
            pipe.hset(key, mapping={name: repr(value) for name, value in mapping.items()})
            pipe.expireat(key, expiry[key])
            if number % 1000 == 0:
                pipe.execute()
                log.info("rebuild_progress", extra={"hashes_written": number, "hashes_total": len(hashes)})
        for row in shift_rows:
            end = None if row.end is None else aware(row.end).timestamp()
            pipe.hset(
                keys.shifts,
                shift_key((row.source, row.id)),
                json.dumps([row.site_id, aware(row.start).timestamp(), end, row.hourly_cost]),
            )
        pipe.execute()
    finally:
        # Release only our own lock (it may have expired and been taken by another rebuild).
        if client.get(keys.rebuild_lock) == token.encode():
            client.delete(keys.rebuild_lock)
    report = RebuildReport(len(hashes), len(rows), len(shift_rows), folded, round(time.monotonic() - started, 3))
    log.info("rebuild_done", extra=report.__dict__)
    return report
