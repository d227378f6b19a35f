"""Refresh of the site page: doors, labor and stuck orders every few seconds, trends by Patch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dash import Dash, Input, Output, Patch, State, html, no_update

from dashboard.aggregates import truncate
from dashboard.stream import StoreUnavailable
from datasources.sources import Sources
from layouts import ids
from layouts import site as site_layout

SITE_REFRESH_S = 2.0
TREND_HOURS = 24


def site_view(
    state: dict[str, Any] | None, network_backlog_per_picker: float | None, thresholds: dict[str, dict[str, float]]
) -> tuple[Any, ...]:
    """Return the page's parts for a site state: doors, labor, stuck rows, stuck count, as-of line."""
    if state is None:
        return (
            site_layout.doors(None, thresholds),
            site_layout.labor(None, None),
            [],
            "",
            "this site has sent no event yet",
        )
    shown = len(state["stuck_orders"])
    count = (
        f"({state['stuck_count']:,})" if shown == state["stuck_count"] else f"({shown:,} of {state['stuck_count']:,})"
    )
    last = state.get("last_event_at")
    as_of = f"data as of {state['as_of'][11:19]} UTC" + (f" · last event {last[11:19]} UTC" if last else "")
    return (
        site_layout.doors(state, thresholds),
        site_layout.labor(state, network_backlog_per_picker),
        site_layout.stuck_rows(state["stuck_orders"]),
        count,
        as_of,
    )


def trend_points(points: list[tuple[datetime, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Return the live series as rows with an ISO time ``t``."""
    return [{"t": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), **figures} for moment, figures in points]


def register(app: Dash, sources: Sources, network_backlog_per_picker: Any) -> None:
    """Register the site page's callbacks; ``network_backlog_per_picker()`` reads the shared wall snapshot."""
    thresholds = sources.settings.tile_thresholds

    def read_state(site_id: str) -> dict[str, Any] | None:
        return sources.cached(
            "site-state", SITE_REFRESH_S, lambda: sources.state.state(site_id, datetime.now(UTC)), site_id
        )

    @app.callback(
        Output(ids.SITE_DOORS, "children"),
        Output(ids.SITE_LABOR, "children"),
        Output(ids.SITE_STUCK, "rowData"),
        Output(ids.SITE_STUCK_COUNT, "children"),
        Output(ids.SITE_AS_OF, "children"),
        Output(ids.SITE_BANNER, "children"),
        Output(ids.SITE_BANNER, "hidden"),
        Input(ids.SITE_INTERVAL, "n_intervals"),
        State(ids.SITE_ID, "data"),
    )
    def refresh(_n: int | None, site_id: str) -> tuple[Any, ...]:
        try:
            state = read_state(site_id)
        except StoreUnavailable as error:
            return (no_update,) * 5 + (f"Site state unavailable: {error}", False)
        return (*site_view(state, network_backlog_per_picker(), thresholds), "", True)

    @app.callback(
        Output(ids.SITE_TRENDS, "figure"),
        Input(ids.SITE_TRENDS_INTERVAL, "n_intervals"),
        State(ids.SITE_ID, "data"),
    )
    def trends(n: int | None, site_id: str) -> Any:
        now = datetime.now(UTC)
        # Hour-aligned points read one hour hash each: 24 reads for a day.
        end = truncate(now, "h") + timedelta(hours=1)
        try:
            series = sources.cached(
                "site-trends",
                30,
                lambda: trend_points(
                    sources.live.series([site_id], end, TREND_HOURS, timedelta(hours=1), timedelta(hours=1), now)[
                        site_id
                    ]
                ),
                site_id,
            )
        except StoreUnavailable:
            return no_update if n else site_layout.trends_figure([])
        if not n:
            return site_layout.trends_figure(series)
        patch = Patch()
        figure = site_layout.trends_figure(series)
        for index, trace in enumerate(figure["data"]):
            patch["data"][index]["x"] = trace["x"]
            patch["data"][index]["y"] = trace["y"]
        return patch

    @app.callback(
        Output(ids.LOCATION, "pathname", allow_duplicate=True),
        Input(ids.SITE_STUCK, "cellClicked"),
        prevent_initial_call=True,
    )
    def open_order(cell: dict[str, Any] | None) -> Any:
        if not cell or not cell.get("rowId"):
            return no_update
        return f"/orders/{cell['rowId']}"


def unknown_site(site_id: str) -> html.Div:
    """Build the page for a site id that is not valid."""
    return html.Div(
        [html.H1("No such site"), html.Div(f"{site_id!r} is not a site id.", className="empty")], className="page"
    )
