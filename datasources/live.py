"""Live figures from Redis, as plain domain objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis

from dashboard.aggregates import NETWORK
from dashboard.live import LiveAggregates
from dashboard.metrics import each_bucket, finalize, window_buckets
from dashboard.stream import Keys, PipelineStatus, StoreUnavailable, pipeline_status

__all__ = ["LiveSource", "StoreUnavailable"]


class LiveSource:
    """Read live figures from Redis; raise StoreUnavailable when Redis is down."""

    def __init__(self, client: redis.Redis, keys: Keys, retention_s: int = 48 * 3600) -> None:
        self._client = client
        self._keys = keys
        self._live = LiveAggregates(client, keys, retention_s)

    def pipeline(self) -> PipelineStatus:
        """Return the pipeline's counters, rates and lag as of now."""
        return pipeline_status(self._client, self._keys)

    def metrics(self, site_id: str | None, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
        """Return the contract's metrics of a recent [start, end) from the live hashes."""
        pieces = each_bucket(window_buckets(start, end, ("h", "m")))
        try:
            fields = self._live.fields(site_id or NETWORK, pieces)
            open_shifts = self._live.open_shifts(site_id)
        except redis.RedisError as error:
            raise StoreUnavailable(f"Redis: {error}") from error
        return finalize(fields, sum(shift.cost_between(start, end, now) for shift in open_shifts))
