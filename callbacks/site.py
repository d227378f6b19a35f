"""Refresh of the site page: doors, labor and stuck orders every few seconds, trends by Patch."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from dash import ALL, Dash, Input, Output, Patch, State, ctx, html, no_update

from dashboard.aggregates import truncate
from dashboard.stream import StoreUnavailable
from dashboard.wallboard import database_name, history_unavailable
from datasources.alerts import AlertConflict, AlertNotFound
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


def history_message(sources: Sources) -> str:
    """Return the site page's plain message while the database is down."""
    since = sources.down_since("database") or datetime.now(UTC)
    return history_unavailable(database_name(sources.settings.database_url), since)


def site_alerts(sources: Sources, site_id: str) -> list[dict[str, Any]]:
    """Return the site's open and acknowledged alerts as plain values, newest first."""
    return [alert.as_dict() for alert in sources.alerts.active(site_id)]


def alerts_version(alerts: list[dict[str, Any]], can_acknowledge: bool) -> str:
    """Return a fingerprint of the alerts on screen: the list is re-rendered only when it changes."""
    return hashlib.blake2b(repr((alerts, can_acknowledge)).encode(), digest_size=8).hexdigest()


def apply_acknowledgement(
    sources: Sources, pending: dict[str, Any] | None, comment: str | None, now: datetime
) -> str | None:
    """Acknowledge the pending alert as the dashboard's operator; return an error message, or None when done.

    The role check is the mode controls' one, repeated here: a read-only
    dashboard never acknowledges, whatever request reaches the server.
    """
    if not sources.controls_enabled:
        return f"refused: this dashboard's role ({sources.settings.dashboard_role}) may not acknowledge alerts"
    if not pending:
        return "nothing to acknowledge"
    text = (comment or "").strip()
    if not text:
        return "a comment is required"
    if len(text) > 1000:
        return "the comment is longer than 1000 characters"
    try:
        sources.alerts.acknowledge(int(pending["id"]), sources.settings.control_token_name, text, now)
    except (AlertNotFound, AlertConflict) as error:
        return str(error)
    except StoreUnavailable as error:
        return f"not acknowledged: {error}"
    return None


COMMENT_JS = "function(comment) { return !(comment && comment.trim()); }"
# Once the page's panels are filled, scroll to the element the URL's #anchor names (a link from an alert).
SCROLL_JS = """
function(_asOf, _alerts, done) {
    const hash = window.location.hash;
    if (done || !hash) { return window.dash_clientside.no_update; }
    const target = document.getElementById(decodeURIComponent(hash.slice(1)));
    if (!target) { return window.dash_clientside.no_update; }
    target.scrollIntoView({block: "start"});
    return true;
}
"""


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
        except StoreUnavailable:
            # The last doors, labor and stuck orders stay; the trends (Redis) go on.
            return (no_update,) * 5 + (history_message(sources), False)
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
        Output(ids.SITE_ALERTS, "children"),
        Output(ids.SITE_ALERTS_VERSION, "data"),
        Input(ids.SITE_INTERVAL, "n_intervals"),
        Input(ids.ALERT_ACK_REFRESH, "data"),
        State(ids.SITE_ID, "data"),
        State(ids.SITE_ALERTS_VERSION, "data"),
    )
    def alerts(_n: int | None, _version: int | None, site_id: str, shown: str | None) -> tuple[Any, Any]:
        try:
            if ctx.triggered_id == ids.ALERT_ACK_REFRESH:
                found = site_alerts(sources, site_id)  # just acknowledged: read afresh, not from the tick's memo
            else:
                found = sources.cached("site-alerts", SITE_REFRESH_S, lambda: site_alerts(sources, site_id), site_id)
        except StoreUnavailable:
            if shown == "unavailable":
                return no_update, no_update
            return [html.Div("Alerts are unavailable while the database is down.", className="empty")], "unavailable"
        version = alerts_version(found, sources.controls_enabled)
        if version == shown:
            return no_update, no_update
        return site_layout.alert_items(found, sources.controls_enabled), version

    @app.callback(
        Output(ids.ALERT_ACK_DIALOG, "is_open"),
        Output(ids.ALERT_ACK_PENDING, "data"),
        Output(ids.ALERT_ACK_TEXT, "children"),
        Output(ids.ALERT_ACK_COMMENT, "value"),
        Output(ids.ALERT_ACK_ERROR, "children"),
        Output(ids.ALERT_ACK_REFRESH, "data"),
        Output(ids.ALERT_ACK_RESULT, "children"),
        Input({"type": ids.ALERT_ACK, "alert": ALL}, "n_clicks"),
        Input(ids.ALERT_ACK_OK, "n_clicks"),
        Input(ids.ALERT_ACK_CANCEL, "n_clicks"),
        State(ids.ALERT_ACK_PENDING, "data"),
        State(ids.ALERT_ACK_COMMENT, "value"),
        State(ids.ALERT_ACK_REFRESH, "data"),
        prevent_initial_call=True,
    )
    def acknowledge(
        _buttons: list[int | None],
        _ok: int | None,
        _cancel: int | None,
        pending: dict[str, Any] | None,
        comment: str | None,
        version: int | None,
    ) -> tuple[Any, ...]:
        trigger = ctx.triggered_id
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            return (no_update,) * 7  # a re-rendered button, not a click
        if trigger == ids.ALERT_ACK_CANCEL:
            return False, None, no_update, "", "", no_update, no_update
        if trigger == ids.ALERT_ACK_OK:
            error = apply_acknowledgement(sources, pending, comment, datetime.now(UTC))
            if error is not None:
                return True, no_update, no_update, no_update, error, no_update, no_update
            assert pending is not None
            done = f"alert {pending['id']} acknowledged by {sources.settings.control_token_name}"
            return False, None, no_update, "", "", (version or 0) + 1, done
        if not sources.controls_enabled:
            return False, None, no_update, "", "", no_update, "Read-only: this dashboard may not acknowledge alerts."
        wanted = {"id": trigger["alert"]}
        return True, wanted, f"Acknowledge alert {trigger['alert']}.", "", "", no_update, no_update

    app.clientside_callback(COMMENT_JS, Output(ids.ALERT_ACK_OK, "disabled"), Input(ids.ALERT_ACK_COMMENT, "value"))
    app.clientside_callback(
        SCROLL_JS,
        Output(ids.SITE_SCROLLED, "data"),
        Input(ids.SITE_AS_OF, "children"),
        Input(ids.SITE_ALERTS, "children"),
        State(ids.SITE_SCROLLED, "data"),
        prevent_initial_call=True,
    )

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
