"""The app factory: the Dash app, its pages and the JSON API on one Flask server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dash import Dash
from flask_caching import Cache

from callbacks import controls as controls_callbacks
from callbacks import order as order_callbacks
from callbacks import pipeline as pipeline_callbacks
from callbacks import shell as shell_callbacks
from callbacks import site as site_callbacks
from callbacks import tradeoffs as trade_callbacks
from callbacks import wall as wall_callbacks
from dashboard.api import create_api, install_error_handlers
from dashboard.modes import NETWORK
from dashboard.observability import install_observability
from dashboard.runtime import Runtime
from dashboard.settings import Settings
from dashboard.wallboard import build_snapshot
from datasources.alerts import AlertReader
from datasources.breaker import StoreBreakers
from datasources.cache import GuardedCache
from datasources.history import HistorySource, SiteStateReader
from datasources.live import LiveSource
from datasources.sources import ModeControls, Sources
from layouts import shell
from layouts import wall as wall_layout

ROOT = Path(__file__).resolve().parent.parent


def cache_config(settings: Settings) -> dict[str, Any]:
    """Return flask-caching's configuration: Redis (shared by every web process) when Redis is configured."""
    backend = settings.cache_backend
    if backend == "auto":
        backend = "redis" if settings.redis_url else "simple"
    if backend == "redis":
        if not settings.redis_url:
            raise ValueError("cache_backend=redis needs REDIS_URL")
        return {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": settings.redis_url,
            "CACHE_KEY_PREFIX": f"{settings.key_prefix}:cache:",
            "CACHE_DEFAULT_TIMEOUT": 60,
            # Short timeouts: a refresh must never wait on a dead Redis past its interval.
            "CACHE_OPTIONS": {"socket_connect_timeout": 2.0, "socket_timeout": 2.0},
        }
    return {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 60, "CACHE_THRESHOLD": 2000}


def build_sources(runtime: Runtime, cache: Cache) -> Sources:
    """Return the data sources the pages read, on the runtime's stores, one breaker per store for all of them."""
    settings = runtime.settings
    breakers = StoreBreakers.create(settings.breaker_failures, settings.breaker_reset_s)
    shared_cache: Any = cache
    if cache_config(settings)["CACHE_TYPE"] == "RedisCache":
        shared_cache = GuardedCache(cache, breakers.redis)
    return Sources(
        settings=settings,
        live=LiveSource(runtime.redis, runtime.keys, settings.live_retention_s, breakers.redis),
        history=HistorySource(runtime.engine, breakers.database),
        state=SiteStateReader(runtime.engine, settings.stuck_minutes, breakers.database),
        modes=ModeControls(runtime.engine, runtime.redis, runtime.keys, settings.dedup_ttl_s, breakers),
        cache=shared_cache,
        alerts=AlertReader(runtime.engine, breakers.database),
        breakers=breakers,
    )


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Dash:
    """Build the dashboard and API; connect nothing until a request needs it."""
    runtime = runtime or Runtime.open(settings)
    app = Dash(
        __name__,
        title="Last-mile control tower",
        assets_folder=str(ROOT / "assets"),
        update_title=None,
        suppress_callback_exceptions=False,
        serve_locally=True,
    )
    # Bootstrap 5.3 (vendored in assets/, no CDN at run time) in its dark colour mode.
    app.index_string = app.index_string.replace("<html>", '<html data-bs-theme="dark">', 1)
    server = app.server
    server.config["RUNTIME"] = runtime
    cache = Cache(config=cache_config(runtime.settings))
    cache.init_app(server)
    sources = build_sources(runtime, cache)
    wall = wall_callbacks.WallData(sources)
    server.config["WALL"] = wall

    app.layout = shell.frame
    empty = build_snapshot(datetime.now(UTC), runtime.settings.wall_window, [], {}, {}, [], None, [], {}, 1.0)
    example = wall_layout.layout(
        empty,
        {},
        kiosk=False,
        rotate_s=0,
        refresh_ms=1000,
        spark_ms=1000,
        stale_after_s=1.0,
        pipeline_tiles=[],
        controls=None,
    )
    app.validation_layout = shell_callbacks.validation_layout(sources, example)

    server.register_blueprint(create_api(runtime))
    install_error_handlers(server)
    install_observability(server, runtime)  # /metrics, /healthz, /readyz; Dash callback latency
    shell_callbacks.register(app, sources, wall)
    wall_callbacks.register(app, wall)
    controls_callbacks.register(app, sources)
    site_callbacks.register(app, sources, lambda: _network_backlog_per_picker(wall))
    order_callbacks.register(app, sources)
    trade_callbacks.register(app, sources)
    pipeline_callbacks.register(app, sources.live, runtime.settings.max_backlog)
    return app


def _network_backlog_per_picker(wall: wall_callbacks.WallData) -> float | None:
    for row in wall.snapshot.get()["rows"]:
        if row["scope"] == NETWORK:
            return row["tiles"]["backlog_per_active_picker"]["value"]
    return None
