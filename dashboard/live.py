"""Live aggregates in Redis: minute and hour hashes of rollup fields, per scope.

A hash ``{prefix}:live:{scope}:{grain}:{bucket epoch}`` holds the same fields
as the history rollups (see ``dashboard.metrics``) and expires ``retention``
after its bucket starts, so memory stays bounded. Workers apply each
committed batch's deltas through the outbox with one Lua script that first
sets a marker for the outbox row: applying a row twice changes nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis

from dashboard.metrics import Fields, Shift
from dashboard.stream import Keys

MARKER_TTL_S = 24 * 3600

# KEYS: marker, rebuild lock, open-shifts hash.
# ARGV: marker ttl, live key prefix, retention s, n increments, then 5 per
# increment (scope, grain, epoch, field, value), n opened, (key, json) pairs,
# n closed, keys. Returns 1 applied, 0 already applied, -1 rebuild running.
APPLY = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local retention = tonumber(ARGV[3])
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local key = ARGV[2] .. ARGV[i] .. ':' .. ARGV[i + 1] .. ':' .. ARGV[i + 2]
  redis.call('HINCRBYFLOAT', key, ARGV[i + 3], ARGV[i + 4])
  redis.call('EXPIREAT', key, tonumber(ARGV[i + 2]) + retention)
  i = i + 5
end
local opened = tonumber(ARGV[i]); i = i + 1
for _ = 1, opened do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local closed = tonumber(ARGV[i]); i = i + 1
for _ = 1, closed do
  redis.call('HDEL', KEYS[3], ARGV[i])
  i = i + 1
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
        args: list[Any] = [MARKER_TTL_S, self._keys.live, self.retention_s, len(payload["incr"])]
        for scope, grain, epoch, name, value in payload["incr"]:
            args += [scope, grain, epoch, name, repr(float(value))]
        args.append(len(payload["open"]))
        for key, value in payload["open"].items():
            args += [key, json.dumps(value)]
        args.append(len(payload["closed"]))
        args += payload["closed"]
        keys = [self._keys.live_marker(outbox_id), self._keys.rebuild_lock, self._keys.open_shifts]
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

    def open_shifts(self, site_id: str | None) -> list[Shift]:
        """Return the open shifts (all sites, or one)."""
        shifts = []
        for key, value in self._client.hgetall(self._keys.open_shifts).items():
            site, start, cost = json.loads(value)
            if site_id is None or site == site_id:
                source, event_id = json.loads(key)
                start_time = datetime.fromtimestamp(start, UTC)
                shifts.append(Shift((source, event_id), "", site, start_time, None, cost))
        return shifts

    def memory_bytes(self) -> int:
        """Return the memory the live hashes use (sampled with MEMORY USAGE)."""
        total = 0
        for key in self._client.scan_iter(match=f"{self._keys.live}*", count=1000):
            total += self._client.memory_usage(key, samples=0) or 0
        return total
