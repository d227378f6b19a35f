"""The data the dashboard pages read, bundled: live figures, history, site state, modes and a cache."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import redis
import sqlalchemy as sa
from flask_caching import Cache

from dashboard.ingest import Ingestor
from dashboard.modes import CATALOGUE, AuditEntry, AuditQuery, Mode, ModeChange, ModeState
from dashboard.settings import Settings
from dashboard.stream import Keys
from datasources import modes as mode_store
from datasources.alerts import AlertReader
from datasources.breaker import PASS_THROUGH, CircuitBreaker, PassThrough, StoreBreakers
from datasources.history import HistorySource, SiteStateReader
from datasources.live import LiveSource

__all__ = ["ModeControls", "Sources"]

T = TypeVar("T")


class ModeControls:
    """Read and change degradation modes (the SQL store is the truth, Redis its copy)."""

    def __init__(
        self,
        engine: sa.Engine,
        client: redis.Redis,
        keys: Keys,
        dedup_ttl_s: int,
        breakers: StoreBreakers | None = None,
    ) -> None:
        self._engine = engine
        self._client = client
        self._keys = keys
        # Reads fail fast while a store is down; a change is always really tried (an operator is waiting).
        self._redis_breaker: CircuitBreaker | PassThrough = breakers.redis if breakers else PASS_THROUGH
        self._database_breaker: CircuitBreaker | PassThrough = breakers.database if breakers else PASS_THROUGH
        # One event per operator action: it skips the backlog bound that guards bulk ingest.
        self._ingestor = Ingestor(client, keys, max_backlog=2**62, dedup_ttl_s=dedup_ttl_s)

    @property
    def catalogue(self) -> dict[str, Mode]:
        """Return the catalogue of modes, in display order."""
        return CATALOGUE

    def current(self) -> dict[tuple[str, str], ModeState]:
        """Return every set mode by (mode, site_id), from the Redis copy."""
        # The copy is in Redis (a reload from the database after a flush is rare).
        return self._redis_breaker.call(mode_store.current_modes, self._client, self._keys, self._engine)

    def audit(self, query: AuditQuery | None = None) -> list[AuditEntry]:
        """Return the audit trail, newest first."""
        return self._database_breaker.call(mode_store.audit, self._engine, query)

    def change(self, change: ModeChange, actor: str, now: datetime) -> ModeState:
        """Apply a validated change for ``actor`` and return the new state."""
        return mode_store.set_mode(self._engine, self._client, self._keys, self._ingestor, change, actor, now)


@dataclass
class Sources:
    """Everything a page callback may read from, built once by the app factory."""

    settings: Settings
    live: LiveSource
    history: HistorySource
    state: SiteStateReader
    modes: ModeControls
    cache: Cache
    alerts: AlertReader
    breakers: StoreBreakers | None = None

    @property
    def controls_enabled(self) -> bool:
        """Whether the dashboard's role may change modes (enforced again on every change)."""
        return self.settings.dashboard_role in ("operator", "admin")

    def down_since(self, store: str) -> datetime | None:
        """Return since when ``store`` ("redis" or "database") has failed, per its breaker (None: answering)."""
        if self.breakers is None:
            return None
        return getattr(self.breakers, store).down_since

    def cached(self, name: str, period_s: float, compute: Callable[[], T], *parts: Any) -> T:
        """Return ``compute()`` memoized per tick of ``period_s``: never older than one refresh interval.

        The key holds the tick number, so when a tick ends every reader asks
        afresh; in production the cache is Redis, shared by every web process.
        """
        tick = int(time.time() / period_s)
        key = ":".join([name, *(str(part) for part in parts), str(tick)])
        boxed = self.cache.get(key)
        if boxed is None:
            boxed = {"value": compute()}  # boxed, so a None answer is cached too
            self.cache.set(key, boxed, timeout=max(1, math.ceil(period_s)))
        return boxed["value"]
