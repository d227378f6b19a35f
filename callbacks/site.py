"""Refresh of the site page: state and trends every few seconds, and a banner naming a store that is down.

Each refresh reads both stores (through their breakers): the site's state from
the database, its 24-hour trends from Redis. A store that does not answer
leaves what it last gave on screen and a banner line says so, as on the wall
screen: "Redis unreachable: live figures stale since ...", "History is
unavailable (PostgreSQL unreachable since ...)".
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dash import ALL, Dash, Input, Output, Patch, State, ctx, html, no_update

from dashboard.aggregates import truncate
from dashboard.stream import StoreUnavailable
from dashboard.wallboard import LastGood, database_name, history_unavailable, stale_line
from datasources.alerts import AlertConflict, AlertNotFound
from datasources.sources import Sources
from layouts import ids
from layouts import site as site_layout

SITE_REFRESH_S = 2.0
TREND_HOURS = 24
# Site pages remembered (last state, last trends) per process; the least recently refreshed go first.
REMEMBERED_SITES = 256


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


def unavailable_view(database: str) -> tuple[Any, ...]:
    """Return the page's state parts while the database is down and nothing of the site is remembered."""
    unavailable = [html.Div(f"Unavailable while {database} is down.", className="empty")]
    return unavailable, unavailable, [], "", ""


def history_message(sources: Sources) -> str:
    """Return the site page's plain message while the database is down."""
    since = sources.down_since("database") or datetime.now(UTC)
    return history_unavailable(database_name(sources.settings.database_url), since)


@dataclass
class SiteReading:
    """What one refresh of a site page got: each store's answer, or the last one it gave and why it is stale."""

    state: dict[str, Any] | None
    trends: list[dict[str, Any]] | None
    state_fresh: bool
    trends_fresh: bool
    banner: list[str] = field(default_factory=list)

    @property
    def state_known(self) -> bool:
        """Whether there is a state to show (fresh, or remembered from before the outage)."""
        return self.state_fresh or self.state is not None


def read_site(
    read_state: Callable[[], dict[str, Any] | None],
    read_trends: Callable[[], list[dict[str, Any]]],
    memory: LastGood,
    site_id: str,
    now: datetime,
    history_line: Callable[[], str],
) -> SiteReading:
    """Read the site's state and trends; a store that is down gives what it last gave, and a banner line.

    ``memory`` (the site's ``LastGood``) keeps the state under ``summaries[site_id]``
    and the trend points under ``figures[site_id]["trends"]``.
    """
    banner: list[str] = []
    state: dict[str, Any] | None
    try:
        state = read_state()
        state_fresh = True
        memory.summaries, memory.state_at = ({site_id: state} if state is not None else {}), now
    except StoreUnavailable:
        state, state_fresh = memory.summaries.get(site_id), False
    trends: list[dict[str, Any]] | None
    try:
        trends = read_trends()
        trends_fresh = True
        memory.figures, memory.live_at = {site_id: {"trends": trends}}, now
    except StoreUnavailable as error:
        trends, trends_fresh = (memory.figures.get(site_id) or {}).get("trends"), False
        banner.append(stale_line("Redis", "live figures", memory.live_at, error))
    if not state_fresh:
        line = history_line()
        # With Redis down too, nothing continues: keep the line to what is true.
        banner.append(line if trends_fresh else line.partition(";")[0])
    return SiteReading(state, trends, state_fresh, trends_fresh, banner)


class SiteMemory:
    """The last figures each store gave for each site page of this process (a ``LastGood`` per site)."""

    def __init__(self, size: int = REMEMBERED_SITES) -> None:
        self._size = size
        self._sites: OrderedDict[str, LastGood] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, site_id: str) -> LastGood:
        """Return the site's memory (new and empty the first time)."""
        with self._lock:
            memory = self._sites.get(site_id)
            if memory is None:
                memory = self._sites[site_id] = LastGood()
                while len(self._sites) > self._size:
                    self._sites.popitem(last=False)
            else:
                self._sites.move_to_end(site_id)
            return memory


def trends_output(points: list[dict[str, Any]] | None, fresh: bool, first: bool) -> Any:
    """Return the trends chart's update: the whole figure at first, then a Patch of its series, or no_update."""
    if first:
        return site_layout.trends_figure(points or [])
    if not fresh or points is None:
        return no_update  # the last figures stay on screen
    patch = Patch()
    for index, trace in enumerate(site_layout.trends_figure(points)["data"]):
        patch["data"][index]["x"] = trace["x"]
        patch["data"][index]["y"] = trace["y"]
    return patch


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

    memories = SiteMemory()
    database = database_name(sources.settings.database_url)

    def read_state(site_id: str) -> dict[str, Any] | None:
        return sources.cached(
            "site-state", SITE_REFRESH_S, lambda: sources.state.state(site_id, datetime.now(UTC)), site_id
        )

    def read_trends(site_id: str) -> list[dict[str, Any]]:
        def compute() -> list[dict[str, Any]]:
            now = datetime.now(UTC)
            # Hour-aligned points read one hour hash each: 24 reads for a day, in one round trip.
            end = truncate(now, "h") + timedelta(hours=1)
            series = sources.live.series([site_id], end, TREND_HOURS, timedelta(hours=1), timedelta(hours=1), now)
            return trend_points(series[site_id])

        return sources.cached("site-trends", SITE_REFRESH_S, compute, site_id)

    @app.callback(
        Output(ids.SITE_DOORS, "children"),
        Output(ids.SITE_LABOR, "children"),
        Output(ids.SITE_STUCK, "rowData"),
        Output(ids.SITE_STUCK_COUNT, "children"),
        Output(ids.SITE_AS_OF, "children"),
        Output(ids.SITE_TRENDS, "figure"),
        Output(ids.SITE_BANNER, "children"),
        Output(ids.SITE_BANNER, "hidden"),
        Input(ids.SITE_INTERVAL, "n_intervals"),
        State(ids.SITE_ID, "data"),
    )
    def refresh(n: int | None, site_id: str) -> tuple[Any, ...]:
        reading = read_site(
            lambda: read_state(site_id),
            lambda: read_trends(site_id),
            memories.of(site_id),
            site_id,
            datetime.now(UTC),
            lambda: history_message(sources),
        )
        first = not n
        if reading.state_fresh or (first and reading.state_known):
            parts = site_view(reading.state, network_backlog_per_picker(), thresholds)
        elif first:
            parts = unavailable_view(database)
        else:
            parts = (no_update,) * 5  # the last doors, labor and stuck orders stay
        banner = [html.Div(line) for line in reading.banner]
        return (*parts, trends_output(reading.trends, reading.trends_fresh, first), banner, not banner)

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
