"""Live figures from Redis, as plain domain objects."""

from __future__ import annotations

import redis

from dashboard.stream import Keys, PipelineStatus, StoreUnavailable, pipeline_status

__all__ = ["LiveSource", "StoreUnavailable"]


class LiveSource:
    """Read the pipeline's live state; raise StoreUnavailable when Redis is down."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    def pipeline(self) -> PipelineStatus:
        """Return the pipeline's counters, rates and lag as of now."""
        return pipeline_status(self._client, self._keys)
