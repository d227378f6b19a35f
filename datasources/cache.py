"""A cache that outlives its Redis: through the Redis breaker, falling back to this process's memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from cachelib import SimpleCache

from dashboard.stream import StoreUnavailable
from datasources.breaker import CircuitBreaker, PassThrough

__all__ = ["GuardedCache"]


class GuardedCache:
    """Wrap flask-caching's Cache (Redis-backed): a Redis outage turns every call into a local one.

    The shared snapshot and the per-tick memo of the pages keep working,
    per process, while Redis is down; once it answers again they share it again.
    """

    def __init__(self, cache: Any, breaker: CircuitBreaker | PassThrough, threshold: int = 2000) -> None:
        self._cache = cache
        self._breaker = breaker
        self._local = SimpleCache(threshold=threshold, default_timeout=60)

    def _guarded(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method: Callable[..., Any] = getattr(self._cache, name)

        def attempt() -> Any:
            try:
                return method(*args, **kwargs)
            except redis.RedisError as error:
                raise StoreUnavailable(f"Redis: {error}") from error

        try:
            return self._breaker.call(attempt)
        except StoreUnavailable:
            return getattr(self._local, name)(*args, **kwargs)

    def get(self, key: str) -> Any:
        """Return the cached value, or None."""
        return self._guarded("get", key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any:
        """Store a value."""
        return self._guarded("set", key, value, timeout=timeout)

    def add(self, key: str, value: Any, timeout: int | None = None) -> Any:
        """Store a value only if the key is free; return whether it was stored."""
        return self._guarded("add", key, value, timeout=timeout)

    def delete(self, key: str) -> Any:
        """Drop a key."""
        return self._guarded("delete", key)

    def clear(self) -> Any:
        """Drop everything (both the shared cache and the local one)."""
        self._local.clear()
        return self._guarded("clear")
