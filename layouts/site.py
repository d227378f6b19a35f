"""The site drill-down: dock doors, labor, stuck orders and the site's own trends."""

from __future__ import annotations

from typing import Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.wallboard import alert_href, format_duration, format_value, tile_state
from layouts import ids
from layouts.controls import DialogIds, reason_dialog
from layouts.shell import GRID_THEME

STUCK_COLUMNS = [
    {"field": "order_id", "headerName": "Order", "cellClass": "grid-link", "pinned": "left"},
    {"field": "stage", "headerName": "Stage"},
    {"field": "stuck_for_min", "headerName": "Stuck (min)", "filter": "agNumberColumnFilter", "sort": "desc"},
    {"field": "since", "headerName": "At stage since (UTC)"},
    {"field": "priority", "headerName": "Priority"},
    {"field": "promised_end", "headerName": "Promised by (UTC)"},
    {"field": "attempts", "headerName": "Attempts", "filter": "agNumberColumnFilter"},
    {"field": "reason", "headerName": "Why it is stuck", "flex": 2, "minWidth": 260},
]
TREND_METRICS = (
    ("on_time_rate", "On time", "%"),
    ("first_attempt_rate", "First attempt", "%"),
    ("cost_per_delivery", "Cost / delivery", ""),
    ("p95_driver_idle_s", "Driver idle p95 (min)", ""),
)


def stuck_rows(stuck: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the stuck orders as grid rows (times shortened, minutes rounded)."""
    return [
        {
            "order_id": order["order_id"],
            "stage": order["stage"],
            "stuck_for_min": round(order["stuck_for_s"] / 60, 1),
            "since": (order.get("since") or "")[:16].replace("T", " "),
            "priority": order.get("priority") or "",
            "promised_end": (order.get("promised_end") or "")[:16].replace("T", " "),
            "attempts": order.get("attempts", 0),
            "reason": order.get("reason", ""),
        }
        for order in stuck
    ]


def door_card(door: dict[str, Any], thresholds: dict[str, dict[str, float]]) -> html.Div:
    """Build one dock door: status, queue, oldest wait and why it is out of service."""
    out = door["status"] == "out_of_service"
    state = "bad" if out else tile_state("dock_queue", door.get("oldest_wait_s") or 0.0, thresholds)
    lines = [
        html.Div(door["dock_id"], className="door-id"),
        html.Div("out of service" if out else "open", className="door-status"),
        html.Div(f"{door['trucks_waiting']} waiting", className="door-queue"),
        html.Div(
            f"oldest {format_duration(door['oldest_wait_s'])}" if door.get("oldest_wait_s") is not None else "",
            className="door-wait",
        ),
    ]
    if out:
        lines.append(html.Div(door.get("reason") or "no reason given", className="door-reason"))
    return html.Div(lines, className=f"door door-{state}", **{"data-door": door["dock_id"]})


def doors(state: dict[str, Any] | None, thresholds: dict[str, dict[str, float]]) -> list[Any]:
    """Build the grid of dock doors (or say none is known)."""
    if not state or not state["docks"]:
        return [html.Div("No dock door seen yet at this site.", className="empty")]
    return [door_card(door, thresholds) for door in state["docks"]]


def labor(state: dict[str, Any] | None, network_backlog_per_picker: float | None) -> list[Any]:
    """Build the labor panel: active workers by role, absences, backlog per picker against the network."""
    if not state:
        return [html.Div("No labor figures yet.", className="empty")]
    active = state["active_workers"]
    role_cells = [
        html.Div(
            [html.Div(f"{active.get(role, 0)}", className="stat-value"), html.Div(role + "s", className="stat-label")],
            className="stat",
            **{"data-stat": f"active-{role}"},
        )
        for role in ("picker", "packer", "loader", "driver")
    ]
    mine = state.get("backlog_per_active_picker")
    comparison = (
        "no picker on shift"
        if mine is None
        else "network: —"
        if network_backlog_per_picker is None
        else f"network: {format_value('backlog_per_active_picker', network_backlog_per_picker)}"
    )
    return [
        html.Div(role_cells, className="stats"),
        html.Div(
            [
                html.Div(
                    [
                        html.Div(f"{state['absent_workers']}", className="stat-value"),
                        html.Div("absent", className="stat-label"),
                    ],
                    className="stat",
                    **{"data-stat": "absent"},
                ),
                html.Div(
                    [
                        html.Div(f"{state['backlog']:,}", className="stat-value"),
                        html.Div("backlog (orders)", className="stat-label"),
                    ],
                    className="stat",
                    **{"data-stat": "backlog"},
                ),
                html.Div(
                    [
                        html.Div(format_value("backlog_per_active_picker", mine), className="stat-value"),
                        html.Div(f"backlog per picker ({comparison})", className="stat-label"),
                    ],
                    className="stat",
                    **{"data-stat": "backlog-per-picker"},
                ),
            ],
            className="stats",
        ),
    ]


def trends_figure(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the site's hourly trends as one dict figure with a row per metric on a shared time axis."""
    count = len(TREND_METRICS)
    gap = 0.06
    height = (1 - gap * (count - 1)) / count
    data, layout = [], _axes_layout()
    x = [point["t"] for point in points]
    for index, (metric, label, unit) in enumerate(TREND_METRICS):
        axis = "" if index == 0 else str(index + 1)
        y = [_scaled(metric, point.get(metric)) for point in points]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label,
                "x": x,
                "y": y,
                "xaxis": "x",
                "yaxis": f"y{axis}",
                "line": {"width": 2},
                "connectgaps": False,
            }
        )
        top = 1 - index * (height + gap)
        layout[f"yaxis{axis}"] = {
            "domain": [top - height, top],
            "title": {"text": label + (f" ({unit})" if unit else "")},
            "gridcolor": "#2a3140",
            "zeroline": False,
            "automargin": True,
        }
    layout["height"] = 560
    return {"data": data, "layout": layout}


def _scaled(metric: str, value: float | None) -> float | None:
    if value is None:
        return None
    if metric.endswith("_rate"):
        return round(value * 100, 2)
    if metric.endswith("_s"):
        return round(value / 60, 2)
    return round(value, 4)


def _axes_layout() -> dict[str, Any]:
    return {
        "margin": {"l": 70, "r": 20, "t": 10, "b": 40},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": "#e8eaf0", "size": 14},
        "showlegend": False,
        "xaxis": {"type": "date", "gridcolor": "#2a3140", "anchor": f"y{len(TREND_METRICS)}"},
    }


ANCHOR_NAMES = {"site-doors": "dock doors", "site-labor": "labor", "site-stuck": "stuck orders"}


def alert_items(alerts: list[dict[str, Any]], can_acknowledge: bool) -> list[Any]:
    """Build the site's open alerts: severity, message, suggestion, a link to what explains it, Acknowledge."""
    if not alerts:
        return [html.Div("No open alert at this site.", className="empty")]
    items = []
    for alert in alerts:
        href = alert_href(alert["rule"], alert["site_id"])
        anchor = href.partition("#")[2]
        acknowledged = alert["status"] == "acknowledged"
        meta = f"opened {alert['opened_at'][11:19]} UTC · {alert['rule'].replace('_', ' ')}"
        if acknowledged:
            meta += f" · acknowledged by {alert['acknowledged_by']}: {alert['comment']}"
        text = [
            html.Div([html.Span(alert["severity"], className="alert-severity"), " ", alert["message"]]),
            html.Div(alert.get("suggestion") or "", className="alert-suggestion"),
            html.Div(meta, className="alert-meta"),
        ]
        link = html.A(f"see {ANCHOR_NAMES[anchor]}", href=f"#{anchor}", className="alert-link") if anchor else None
        button = (
            dbc.Button(
                "Acknowledge again" if acknowledged else "Acknowledge",
                id={"type": ids.ALERT_ACK, "alert": alert["id"]},
                color="secondary" if acknowledged else "warning",
                className="alert-ack",
            )
            if can_acknowledge
            else None
        )
        items.append(
            html.Div(
                [html.Div(text, className="alert-text"), link, button],
                className=f"alert-item alert-{alert['severity']}",
                **{"data-alert-id": str(alert["id"]), "data-rule": alert["rule"], "data-status": alert["status"]},
            )
        )
    return items


def acknowledge_dialog() -> html.Div:
    """Build the acknowledgement dialog: which alert, a required comment, confirm and cancel."""
    return reason_dialog(
        "Acknowledge the alert",
        "Comment (required, kept with the alert)",
        "Acknowledge",
        "warning",
        DialogIds(
            ids.ALERT_ACK_DIALOG,
            ids.ALERT_ACK_TEXT,
            ids.ALERT_ACK_COMMENT,
            ids.ALERT_ACK_ERROR,
            ids.ALERT_ACK_CANCEL,
            ids.ALERT_ACK_OK,
            ids.ALERT_ACK_PENDING,
            ids.ALERT_ACK_REFRESH,
        ),
    )


def layout(site_id: str, refresh_ms: int, controls: Any, can_acknowledge: bool = True) -> html.Div:
    """Build the site page; the refresh callbacks fill it."""
    return html.Div(
        [
            html.Header(
                [
                    html.H1([dcc.Link("Network", href="/", className="crumb"), " / ", f"Site {site_id}"]),
                    html.Div(id=ids.SITE_AS_OF, className="as-of"),
                ],
                className="page-header",
            ),
            html.Div(id=ids.SITE_BANNER, className="banner banner-bad", hidden=True),
            html.Section(
                [
                    html.H2("Open alerts"),
                    None
                    if can_acknowledge
                    else html.Div("Read-only: this dashboard's role may not acknowledge alerts.", className="hint"),
                    html.Div(id=ids.ALERT_ACK_RESULT, className="mode-result"),
                    html.Div(id=ids.SITE_ALERTS, className="alert-list"),
                    acknowledge_dialog(),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.Section(
                        [html.H2("Dock doors"), html.Div(id=ids.SITE_DOORS, className="doors")], className="panel"
                    ),
                    html.Section([html.H2("Labor"), html.Div(id=ids.SITE_LABOR)], className="panel"),
                ],
                className="two-up",
            ),
            html.Section(
                [
                    html.H2(["Stuck orders ", html.Span(id=ids.SITE_STUCK_COUNT, className="count")]),
                    html.P("Click an order to see its trail of events.", className="hint"),
                    dag.AgGrid(
                        id=ids.SITE_STUCK,
                        columnDefs=STUCK_COLUMNS,
                        rowData=[],
                        defaultColDef={
                            "sortable": True,
                            "filter": True,
                            "floatingFilter": True,
                            "resizable": True,
                            "flex": 1,
                            "minWidth": 110,
                        },
                        getRowId="params.data.order_id",
                        dashGridOptions={
                            "animateRows": False,
                            "localeText": {"noRowsToShow": "No stuck order at this site."},
                            "theme": GRID_THEME,
                            "domLayout": "normal",
                        },
                        className="stuck-grid",
                        style={"height": "420px"},
                    ),
                ],
                className="panel",
            ),
            html.Section(
                [html.H2("Trends (last 24 h, hourly)"), dcc.Graph(id=ids.SITE_TRENDS, config={"displaylogo": False})],
                className="panel",
            ),
            html.Section([html.H2("Degradation modes"), controls], className="panel"),
            dcc.Store(id=ids.SITE_ID, data=site_id),
            dcc.Store(id=ids.SITE_SCROLLED, data=False),
            dcc.Store(id=ids.SITE_ALERTS_VERSION),
            # One refresh for everything: the state (database) and the trends (Redis), so the banner
            # says within a refresh which store is down.
            dcc.Interval(id=ids.SITE_INTERVAL, interval=refresh_ms),
        ],
        className="page site-page",
    )
