"""The app factory: the Dash app, its pages and the JSON API on one Flask server."""

from __future__ import annotations

from pathlib import Path

from dash import Dash

from callbacks import pipeline as pipeline_callbacks
from dashboard.api import create_api, install_error_handlers
from dashboard.runtime import Runtime
from dashboard.settings import Settings
from datasources.live import LiveSource
from layouts import pipeline as pipeline_layout

ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Dash:
    """Build the dashboard and API; connect nothing until a request needs it."""
    runtime = runtime or Runtime.open(settings)
    app = Dash(
        __name__,
        title="Last-mile control tower",
        assets_folder=str(ROOT / "assets"),
        update_title=None,
        suppress_callback_exceptions=False,
    )
    app.layout = pipeline_layout.layout
    server = app.server
    server.config["RUNTIME"] = runtime
    server.register_blueprint(create_api(runtime))
    install_error_handlers(server)
    pipeline_callbacks.register(app, LiveSource(runtime.redis, runtime.keys), runtime.settings.max_backlog)
    return app
