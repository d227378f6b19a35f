"""The Redis side of the pipeline: keys, atomic scripts and pipeline figures.

Every state change of the pipeline is one Lua script, so a crash between two
Redis calls can never leave a half-done step:

- accept: the duplicate check on (source, id), the append to the stream and
  the counters, for a whole batch;
- ack: acknowledge entries whose history is committed, and count them;
- dead-letter: move an entry that failed too often to the dead-letter stream.

The backlog (accepted, not yet processed) is kept as counters updated by
those same scripts, so it is exact and costs one HMGET to read.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

GROUP = "ingest"
RATE_WINDOW_S = 10
_RATE_TTL_S = 120


class StoreUnavailable(RuntimeError):
    """A store (Redis or the database) cannot be reached right now."""


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one deployment, all under one prefix."""

    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}:events"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    @property
    def failures(self) -> str:
        return f"{self.prefix}:failures"

    def rate(self, counter: str, second: int) -> str:
        return f"{self.prefix}:rate:{counter}:{second}"

    @property
    def live(self) -> str:
        """Return the prefix of the live aggregate hashes."""
        return f"{self.prefix}:live:"

    def live_hash(self, scope: str, grain: str, bucket_epoch: int) -> str:
        return f"{self.live}{scope}:{grain}:{bucket_epoch}"

    def live_marker(self, change: str) -> str:
        return f"{self.prefix}:applied:{change}"

    @property
    def rebuild_lock(self) -> str:
        return f"{self.prefix}:rebuilding"

    @property
    def shifts(self) -> str:
        return f"{self.prefix}:shifts"

    def seen(self, source: str, event_id: str) -> bytes:
        """Return the duplicate-check key of (source, id), unambiguous and short."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(len(source).to_bytes(2, "big"))
        digest.update(source.encode())
        digest.update(event_id.encode())
        return f"{self.prefix}:seen:".encode() + digest.digest()


# KEYS: stream, stats, accepted-rate key, seen keys...
# ARGV: dedup ttl, backlog bound, rejected count, payloads...
# Returns {0, backlog, flag per event (1 accepted, 0 duplicate)} or
# {1, backlog} when the backlog is at its bound (nothing written).
ACCEPT = """
local stats = redis.call('HMGET', KEYS[2], 'accepted', 'processed', 'dead')
local backlog = (tonumber(stats[1]) or 0) - (tonumber(stats[2]) or 0) - (tonumber(stats[3]) or 0)
if backlog >= tonumber(ARGV[2]) then
  return {1, backlog}
end
local flags = {0, backlog}
local accepted = 0
for i = 4, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
    accepted = accepted + 1
    flags[#flags + 1] = 1
  else
    flags[#flags + 1] = 0
  end
end
local duplicates = #KEYS - 3 - accepted
if accepted > 0 then
  redis.call('HINCRBY', KEYS[2], 'accepted', accepted)
  redis.call('INCRBY', KEYS[3], accepted)
  redis.call('EXPIRE', KEYS[3], 120)
end
if duplicates > 0 then redis.call('HINCRBY', KEYS[2], 'duplicates', duplicates) end
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[2], 'rejected', ARGV[3]) end
return flags
"""

# KEYS: stream, stats, failures, processed-rate key. ARGV: group, ids...
# The ids go to XACK and HDEL a thousand at a time: Lua's unpack() fails past
# about 8,000 values, and a worker batch may be larger than that.
ACK = """
local acked = 0
local failures = redis.call('HLEN', KEYS[3]) > 0
for first = 2, #ARGV, 1000 do
  local last = math.min(first + 999, #ARGV)
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, first, last))
  if failures then redis.call('HDEL', KEYS[3], unpack(ARGV, first, last)) end
end
if acked > 0 then
  redis.call('HINCRBY', KEYS[2], 'processed', acked)
  redis.call('INCRBY', KEYS[4], acked)
  redis.call('EXPIRE', KEYS[4], 120)
end
return acked
"""

# KEYS: stream, stats, failures, dead. ARGV: group, entry id, fields json, error, tries.
DEAD_LETTER = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  redis.call('XADD', KEYS[4], '*', 'entry_id', ARGV[2], 'fields', ARGV[3], 'error', ARGV[4], 'tries', ARGV[5])
  redis.call('HINCRBY', KEYS[2], 'dead', 1)
end
redis.call('HDEL', KEYS[3], ARGV[2])
return acked
"""


def ensure_group(client: redis.Redis, keys: Keys) -> None:
    """Create the stream and its consumer group unless they exist."""
    try:
        client.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def entry_ms(entry_id: bytes | str) -> int:
    """Return the Redis clock time (ms) at which a stream entry was added."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


@dataclass(frozen=True)
class PipelineStatus:
    """The pipeline's own health, as `GET /api/v1/pipeline` reports it."""

    backlog: int
    accepted: int
    duplicates: int
    rejected: int
    processed: int
    dead_letters: int
    oldest_unprocessed_age_s: float | None
    accepted_per_s: float
    processed_per_s: float
    consumers: int
    redis_memory_bytes: int | None
    as_of: float

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON body of the pipeline endpoint."""
        return asdict(self)


def _stats(client: redis.Redis, keys: Keys) -> dict[str, int]:
    names = ("accepted", "duplicates", "rejected", "processed", "dead")
    values = client.hmget(keys.stats, names)
    return {name: int(value or 0) for name, value in zip(names, values, strict=True)}


def backlog(client: redis.Redis, keys: Keys) -> int:
    """Return how many accepted events are not processed yet."""
    stats = _stats(client, keys)
    return stats["accepted"] - stats["processed"] - stats["dead"]


def oldest_unprocessed_ms(client: redis.Redis, keys: Keys) -> int | None:
    """Return the Redis time (ms) of the oldest entry not yet acknowledged."""
    candidates: list[int] = []
    groups = {g["name"].decode(): g for g in client.xinfo_groups(keys.stream)}
    group = groups.get(GROUP)
    if group is None:
        first = client.xrange(keys.stream, count=1)
    else:
        summary = client.xpending(keys.stream, GROUP)
        if summary["pending"]:
            candidates.append(entry_ms(summary["min"]))
        last = group["last-delivered-id"].decode()
        first = client.xrange(keys.stream, min=f"({last}", count=1)
    if first:
        candidates.append(entry_ms(first[0][0]))
    return min(candidates) if candidates else None


def _used_memory(client: redis.Redis) -> int | None:
    try:
        return int(client.info("memory")["used_memory"])
    except (redis.ResponseError, KeyError, NotImplementedError):
        return None  # the embedded store has no INFO


def pipeline_status(client: redis.Redis, keys: Keys) -> PipelineStatus:
    """Read the pipeline's counters, rates and lag from Redis."""
    try:
        now = time.time()
        second = int(now)
        stats = _stats(client, keys)
        window = range(second - RATE_WINDOW_S + 1, second + 1)  # the current second counts
        rates = client.mget([keys.rate("accepted", s) for s in window] + [keys.rate("processed", s) for s in window])
        accepted_rate = sum(int(v or 0) for v in rates[:RATE_WINDOW_S]) / RATE_WINDOW_S
        processed_rate = sum(int(v or 0) for v in rates[RATE_WINDOW_S:]) / RATE_WINDOW_S
        ensure_group(client, keys)
        oldest = oldest_unprocessed_ms(client, keys)
        consumers = len(client.xinfo_consumers(keys.stream, GROUP))
        memory = _used_memory(client)
    except redis.RedisError as error:
        raise StoreUnavailable(f"Redis: {error}") from error
    backlog_now = stats["accepted"] - stats["processed"] - stats["dead"]
    return PipelineStatus(
        backlog=backlog_now,
        accepted=stats["accepted"],
        duplicates=stats["duplicates"],
        rejected=stats["rejected"],
        processed=stats["processed"],
        dead_letters=stats["dead"],
        oldest_unprocessed_age_s=None if oldest is None else max(0.0, now - oldest / 1000),
        accepted_per_s=accepted_rate,
        processed_per_s=processed_rate,
        consumers=consumers,
        redis_memory_bytes=memory,
        as_of=now,
    )
