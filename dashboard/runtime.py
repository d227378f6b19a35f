"""Connections to the stores, built once per process from the settings.

Production: redis-py (hiredis parser) and PostgreSQL. Embedded: an in-process
fakeredis server with Lua, and SQLite under ``VAR_DIR``. Everything above this
module sees the same two objects either way.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field

import redis
import sqlalchemy as sa
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from dashboard.db import create_db_engine
from dashboard.ingest import Ingestor
from dashboard.settings import Settings
from dashboard.stream import Keys
from dashboard.worker import IngestWorker

# Blocking reads must stay below the socket timeout (see docs/operations.md).
_SOCKET_TIMEOUT_S = 10.0
# Young collections every 50,000 allocations instead of 700; older ones every
# 20 and 10 of those (see tune_gc).
_GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Make Python's cycle collector cheap for a process that handles events by the hundred.

    Call it once the process has started (its app, its connections). A
    worker's batch holds hundreds of thousands of objects until it commits,
    and one POST of 500 events tens of thousands; reference counting frees
    them afterwards. With the default thresholds the collector ran every 700
    allocations and walked them again and again, and the older collections
    walked the whole app too: about 20 of a worker's 72 µs per event, and 2
    of the API's 12. The start-up objects are frozen out of collections, and
    collections run 70 times less often. Cycles are still collected (about
    0.1 object per event is in one, measured), by the next collection.
    """
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def connect_redis(settings: Settings) -> redis.Redis:
    """Return a Redis client for the settings (in-process when none is configured)."""
    if settings.redis_url is None:
        import fakeredis  # only the embedded mode needs it

        return fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=2.0,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=2),
    )


@dataclass
class Runtime:
    """The settings and the store connections of one process."""

    settings: Settings
    redis: redis.Redis
    engine: sa.Engine
    keys: Keys
    _workers: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings | None = None) -> Runtime:
        """Connect (lazily) to the stores the settings name."""
        settings = settings or Settings()
        return cls(settings, connect_redis(settings), create_db_engine(settings), Keys(settings.key_prefix))

    def ingestor(self) -> Ingestor:
        """Return the validating, de-duplicating entry point to the stream."""
        return Ingestor(
            self.redis,
            self.keys,
            max_backlog=self.settings.max_backlog,
            dedup_ttl_s=self.settings.dedup_ttl_s,
        )

    def worker(self) -> IngestWorker:
        """Return a new ingest worker configured from the settings."""
        s = self.settings
        return IngestWorker(
            self.redis,
            self.engine,
            self.keys,
            batch=s.worker_batch,
            block_ms=s.worker_block_ms,
            claim_idle_ms=s.claim_idle_ms,
            max_tries=s.max_tries,
            stream_retention_s=s.stream_retention_s,
            live_retention_s=s.live_retention_s,
        )

    def start_worker_thread(self, stop: threading.Event) -> threading.Thread:
        """Run an ingest worker in a daemon thread of this process (embedded mode)."""
        thread = threading.Thread(target=self.worker().run, args=(stop,), name="ingest-worker", daemon=True)
        thread.start()
        self._workers.append(thread)
        return thread
