"""The router: one callback turns the URL into a page and the navigation bar."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from dash import Dash, Input, Output, html

from callbacks import controls as controls_callbacks
from callbacks import site as site_callbacks
from callbacks.wall import WallData
from callbacks.wall import page as wall_page
from dashboard.modes import NETWORK
from dashboard.stream import StoreUnavailable
from datasources.sources import Sources
from layouts import controls as controls_layout
from layouts import ids, shell
from layouts import order as order_layout
from layouts import pipeline as pipeline_layout
from layouts import site as site_layout
from layouts import tradeoffs as trade_layout

_SITE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def site_ids(sources: Sources) -> list[str]:
    """Return the known sites, or none when the database cannot say."""
    try:
        return sources.cached("site-ids", sources.settings.refresh_s, sources.state.site_ids)
    except StoreUnavailable:
        return []


def render(route: shell.Route, sources: Sources, wall: WallData) -> tuple[Any, Any]:
    """Return (page, navigation) for a route; the navigation is hidden in kiosk mode."""
    sites = site_ids(sources)
    navigation = None if route.kiosk else shell.nav(sites)
    settings = sources.settings
    if route.page == "wall":
        controls = controls_layout.dialog(controls_callbacks.controls(sources, sites, NETWORK))
        return wall_page(wall, route, controls), navigation
    if route.page == "site":
        assert route.arg is not None
        if not _SITE_ID.fullmatch(route.arg):
            return site_callbacks.unknown_site(route.arg), navigation
        controls = controls_callbacks.controls(sources, sites, route.arg)
        refresh_ms = int(site_callbacks.SITE_REFRESH_S * 1000)
        return site_layout.layout(route.arg, refresh_ms, controls, sources.controls_enabled), navigation
    if route.page == "order":
        assert route.arg is not None
        return order_layout.layout(route.arg), navigation
    if route.page == "tradeoffs":
        today = datetime.now(UTC).date()
        return trade_layout.layout(sites, today, int(settings.history_refresh_s * 1000)), navigation
    if route.page == "pipeline":
        return pipeline_layout.layout(), navigation
    return shell.missing(route.arg or ""), navigation


def register(app: Dash, sources: Sources, wall: WallData) -> None:
    """Register the router on ``app``."""

    @app.callback(
        Output(ids.PAGE, "children"),
        Output(ids.NAV, "children"),
        Input(ids.LOCATION, "pathname"),
        Input(ids.LOCATION, "search"),
    )
    def route(pathname: str | None, search: str | None) -> tuple[Any, Any]:
        return render(shell.parse_route(pathname, search), sources, wall)


def validation_layout(sources: Sources, wall_example: html.Div) -> html.Div:
    """Return every page at once, so Dash can check each callback's ids when the app starts."""
    controls = controls_layout.panel([], NETWORK, [], True)
    return html.Div(
        [
            shell.frame(),
            wall_example,
            controls_layout.dialog(controls),
            site_layout.layout("example", 1000, html.Div()),
            order_layout.layout("example"),
            trade_layout.layout([], datetime.now(UTC).date(), 1000),
            pipeline_layout.layout(),
        ]
    )
