"""One typed settings object, read from the environment once."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the processes need to know, with production-safe defaults.

    Precedence: values passed to the constructor, then the environment, then
    the defaults below. With neither ``REDIS_URL`` nor ``DATABASE_URL`` set,
    the system runs embedded: an in-process Redis-compatible store and SQLite
    under ``VAR_DIR``.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    redis_url: str | None = None
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=1, le=65535)
    var_dir: Path = Path("var")

    # Ingest API bounds (contract section 3).
    max_batch_events: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    max_backlog: int = Field(default=100_000, ge=1)
    # Seconds after which a repeated (source, id) is no longer caught at the
    # API; PostgreSQL's primary key still drops it, so nothing counts twice.
    dedup_ttl_s: int = Field(default=48 * 3600, ge=60)

    # Redis keys: one namespace, so several deployments can share a server.
    key_prefix: str = "tower"

    # Ingest workers.
    worker_batch: int = Field(default=500, ge=1)
    worker_block_ms: int = Field(default=1000, ge=1)
    claim_idle_ms: int = Field(default=15_000, ge=1)
    max_tries: int = Field(default=5, ge=1)
    # The embedded demo feeds itself a simulated network (DEMO_FEED=0 to post your own events).
    demo_feed: bool = True
    demo_sites: int = Field(default=4, ge=1, le=14)

    # Live aggregates in Redis (minute and hour buckets) expire after this.
    live_retention_s: int = Field(default=48 * 3600, ge=3600)
    # Minutes an order may sit at a stage before it counts as stuck.
    stuck_minutes: dict[str, float] = Field(
        default_factory=lambda: {"created": 120, "picked": 60, "packed": 180, "loaded": 480, "failed": 1440}
    )
    # Acknowledged stream entries are kept this long for other consumer
    # groups, then trimmed (never past what any group still needs).
    stream_retention_s: int = Field(default=600, ge=0)

    @field_validator("redis_url", "database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None

    @property
    def embedded(self) -> bool:
        """Whether to run on the in-process store and SQLite."""
        return self.redis_url is None and self.database_url is None

    @property
    def sqlalchemy_url(self) -> str:
        """Return the database URL in SQLAlchemy's spelling, psycopg 3 driver."""
        url = self.database_url
        if url is None:
            return f"sqlite:///{(self.var_dir / 'tower.db').resolve()}"
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain) :]
        return url
