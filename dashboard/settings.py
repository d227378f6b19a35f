"""One typed settings object, read from the environment once."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Tile colours of the wall screen. Rates are fractions; times in seconds; cost in the
# currency of ``hourly_cost``. Where ``bad`` is below ``warn``, lower values are worse.
DEFAULT_TILE_THRESHOLDS: dict[str, dict[str, float]] = {
    "on_time_rate": {"warn": 0.95, "bad": 0.90},
    "first_attempt_rate": {"warn": 0.92, "bad": 0.85},
    "p95_driver_idle_s": {"warn": 600.0, "bad": 1200.0},
    "dock_oldest_wait_s": {"warn": 900.0, "bad": 1800.0},
    "backlog_per_active_picker": {"warn": 30.0, "bad": 60.0},
    "cost_per_delivery": {"warn": 8.0, "bad": 12.0},
}


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
    # Entries read at most per batch: a worker with a backlog commits 2,000 at
    # a time (16,400 events/s with 2 workers against 12,700 at 500, see
    # docs/performance.md); with none it takes what has arrived, so no wait.
    worker_batch: int = Field(default=2000, ge=1)
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

    # -- the dashboard -------------------------------------------------------------------
    # Seconds between wall-screen refreshes; one shared computation per tick serves every screen.
    refresh_s: float = Field(default=1.0, ge=0.2, le=60)
    # Seconds between refreshes of the wall screen's sparklines (their history changes slowly).
    sparkline_refresh_s: float = Field(default=10.0, ge=0.2, le=600)
    # The range the wall screen's tiles cover, ending now: 15m, 1h or 24h.
    wall_window: Literal["15m", "1h", "24h"] = "1h"
    # Hours of history the sparklines show, and minutes between their points.
    sparkline_hours: int = Field(default=6, ge=1, le=24)
    sparkline_step_minutes: int = Field(default=15, ge=1, le=60)
    # Seconds between refreshes of history pages (trade-offs); their cache never outlives it.
    history_refresh_s: float = Field(default=30.0, ge=1, le=3600)
    # Figures older than this (pipeline lag, or no answer from the server) get a stale warning.
    stale_after_s: float = Field(default=30.0, ge=1)
    # Tile colours: per metric, the "warn" and "bad" levels. Where bad < warn, lower is worse.
    tile_thresholds: dict[str, dict[str, float]] = Field(default_factory=lambda: dict(DEFAULT_TILE_THRESHOLDS))
    # The role the dashboard acts with until sign-in exists: operator or admin shows the
    # mode controls; viewer or site_lead shows the state only (and the server refuses changes).
    dashboard_role: Literal["viewer", "site_lead", "operator", "admin"] = "operator"
    # The principal named in the audit for changes made with the dashboard's controls.
    control_token_name: str = Field(default="wall-screen-operator", min_length=1, max_length=128)
    # Circuit breakers around Redis and the database (datasources/breaker.py): this many
    # consecutive failures open one; it then fails fast and lets one trial call through
    # every BREAKER_RESET_S. At most half of REFRESH_S (see _breaker_within_refresh), so
    # every refresh tries a store that is down, and one that is back shows within a refresh.
    breaker_failures: int = Field(default=3, ge=1, le=100)
    breaker_reset_s: float = Field(default=0.5, gt=0, le=60)
    # History cache: "redis" (shared by every web process; needs REDIS_URL) or "simple" (per process).
    cache_backend: Literal["auto", "redis", "simple"] = "auto"

    # -- alerts (docs/alerts.md) -----------------------------------------------------------
    # A policy file to use instead of the shipped dashboard/alert_policies.toml; re-read when it changes.
    alert_policies: Path | None = None
    # Seconds between alert evaluations (one process evaluates, under a Redis lease).
    alert_interval_s: float = Field(default=10.0, gt=0, le=15)

    @field_validator("redis_url", "database_url", "alert_policies", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None

    @field_validator("tile_thresholds", mode="after")
    @classmethod
    def _thresholds_over_defaults(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        # Setting one metric's levels keeps the defaults of the others.
        merged = {name: dict(levels) for name, levels in DEFAULT_TILE_THRESHOLDS.items()}
        for name, levels in value.items():
            if set(levels) != {"warn", "bad"}:
                raise ValueError(f"tile_thresholds.{name}: give exactly 'warn' and 'bad', got {sorted(levels)}")
            merged[name] = dict(levels)
        return merged

    @model_validator(mode="after")
    def _breaker_within_refresh(self) -> Settings:
        # Trials every half refresh: the previous refresh's failed trial is always a whole
        # cool-down old when the next refresh comes, however late or early its timer fires.
        limit = self.refresh_s / 2
        if self.breaker_reset_s > limit:
            if "breaker_reset_s" in self.model_fields_set:
                raise ValueError(
                    f"breaker_reset_s ({self.breaker_reset_s:g} s) must be at most half of refresh_s "
                    f"({self.refresh_s:g} s), or a store that is back may take longer than a refresh to show"
                )
            self.breaker_reset_s = limit  # the default, for a short REFRESH_S
        return self

    @property
    def snapshot_s(self) -> float:
        """Seconds between computations of the wall screen's shared snapshot: half a refresh.

        A posted figure then waits at most half a refresh for the server and
        one refresh for the screen's next poll (p95 about 1.4 s at 1 s), for
        two snapshot computations a second instead of one.
        """
        return self.refresh_s / 2

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
