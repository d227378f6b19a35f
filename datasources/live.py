"""Live figures from Redis, as plain domain objects."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from dashboard.aggregates import NETWORK
from dashboard.live import LiveAggregates
from dashboard.metrics import Shift, each_bucket, finalize, window_buckets
from dashboard.stream import Keys, PipelineStatus, StoreUnavailable, pipeline_status
from datasources.breaker import PASS_THROUGH, CircuitBreaker, PassThrough

__all__ = ["LiveSource", "StoreUnavailable"]


class LiveSource:
    """Read live figures from Redis; raise StoreUnavailable when Redis is down."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        retention_s: int = 48 * 3600,
        breaker: CircuitBreaker | PassThrough = PASS_THROUGH,
    ) -> None:
        self._client = client
        self._keys = keys
        self._live = LiveAggregates(client, keys, retention_s)
        # Every Redis round trip below goes through it: a dead Redis fails fast.
        self._breaker = breaker

    def pipeline(self) -> PipelineStatus:
        """Return the pipeline's counters, rates and lag as of now."""
        return self._breaker.call(pipeline_status, self._client, self._keys)

    def metrics(self, site_id: str | None, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
        """Return the contract's metrics of a recent [start, end) from the live hashes."""
        pieces = each_bucket(window_buckets(start, end, ("h", "m")))

        def read() -> tuple[dict[str, float], list[Shift]]:
            try:
                return self._live.fields(site_id or NETWORK, pieces), self._live.shifts(site_id)
            except redis.RedisError as error:
                raise StoreUnavailable(f"Redis: {error}") from error

        fields, shifts = self._breaker.call(read)
        return finalize(fields, sum(shift.cost_between(start, end, now) for shift in shifts))

    def series(
        self,
        scopes: Iterable[str | None],
        end: datetime,
        points: int,
        step: timedelta,
        window: timedelta,
        now: datetime,
    ) -> dict[str | None, list[tuple[datetime, dict[str, Any]]]]:
        """Return, per scope (None: the network), the metrics of [t - window, t) at ``points`` times t up to ``end``.

        ``end`` must be a whole minute and ``window`` a whole number of steps.
        Every hash is read in one round trip, whatever the number of scopes.
        """
        per_window = int(window / step)
        if per_window < 1 or window != step * per_window:
            raise ValueError("window must be a whole number of steps")
        first = end - step * (points - 1 + per_window)
        slots = [first + step * i for i in range(points - 1 + per_window)]
        plans = [each_bucket(window_buckets(slot, slot + step, ("h", "m"))) for slot in slots]
        scopes = list(scopes)
        pipe = self._client.pipeline(transaction=False)
        for scope in scopes:
            for plan in plans:
                for grain, bucket in plan:
                    pipe.hgetall(self._keys.live_hash(scope or NETWORK, grain, int(bucket.timestamp())))

        def read() -> tuple[list[Any], list[Shift]]:
            try:
                return pipe.execute(), self._live.shifts(None)
            except redis.RedisError as error:
                raise StoreUnavailable(f"Redis: {error}") from error

        executed, all_shifts = self._breaker.call(read)
        replies = iter(executed)
        answer: dict[str | None, list[tuple[datetime, dict[str, Any]]]] = {}
        for scope in scopes:
            slot_fields: list[dict[str, float]] = []
            for plan in plans:
                totals: dict[str, float] = defaultdict(float)
                for _ in plan:
                    for name, value in next(replies).items():
                        totals[name.decode()] += float(value)
                slot_fields.append(totals)
            shifts = [shift for shift in all_shifts if scope is None or shift.site_id == scope]
            answer[scope] = [
                (moment, _window_metrics(slot_fields[i : i + per_window], shifts, moment - window, moment, now))
                for i, moment in ((i, first + step * (i + per_window)) for i in range(points))
            ]
        return answer

    def record_samples(self, minute: datetime, samples: Mapping[str, Mapping[str, Any]], keep: timedelta) -> bool:
        """Keep one sample of current-state figures per scope and minute; return whether this call wrote them.

        The first caller of a minute writes (several web processes may try);
        samples older than ``keep`` are dropped.
        """
        return self._breaker.call(self._record_samples, minute, samples, keep)

    def _record_samples(self, minute: datetime, samples: Mapping[str, Mapping[str, Any]], keep: timedelta) -> bool:
        epoch = int(minute.timestamp())
        try:
            if not self._client.set(f"{self._keys.prefix}:wall:sampled:{epoch}", 1, nx=True, ex=120):
                return False
            pipe = self._client.pipeline(transaction=False)
            for scope, figures in samples.items():
                key = self._samples_key(scope)
                pipe.zremrangebyscore(key, epoch, epoch)
                pipe.zadd(key, {json.dumps({"t": epoch, **figures}, sort_keys=True): epoch})
                pipe.zremrangebyscore(key, "-inf", epoch - keep.total_seconds())
                pipe.expire(key, int(keep.total_seconds()) + 3600)
            pipe.execute()
        except redis.RedisError as error:
            raise StoreUnavailable(f"Redis: {error}") from error
        return True

    def samples(self, scopes: Iterable[str], since: datetime) -> dict[str, list[dict[str, Any]]]:
        """Return the recorded current-state samples of each scope since ``since``, oldest first."""
        scopes = list(scopes)
        pipe = self._client.pipeline(transaction=False)
        for scope in scopes:
            pipe.zrangebyscore(self._samples_key(scope), since.timestamp(), "+inf")
        replies = self._breaker.call(_execute, pipe)
        return {
            scope: [{**sample, "t": datetime.fromtimestamp(sample["t"], UTC)} for sample in map(json.loads, members)]
            for scope, members in zip(scopes, replies, strict=True)
        }

    def _samples_key(self, scope: str) -> str:
        return f"{self._keys.prefix}:wall:samples:{scope}"


def _execute(pipe: Any) -> list[Any]:
    try:
        return pipe.execute()
    except redis.RedisError as error:
        raise StoreUnavailable(f"Redis: {error}") from error


def _window_metrics(
    slot_fields: list[dict[str, float]], shifts: list[Shift], start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    summed: dict[str, float] = defaultdict(float)
    for fields in slot_fields:
        for name, value in fields.items():
            summed[name] += value
    return finalize(summed, sum(shift.cost_between(start, end, now) for shift in shifts))
