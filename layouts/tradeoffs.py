"""Trade-offs for engineering managers: rates and cost over a date range, mode changes, failures, CSV."""

from __future__ import annotations

from datetime import date
from typing import Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import ids
from layouts.shell import GRID_THEME

PRESETS = (("today", "Today"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"))
SPANS = (("1", "1 h"), ("4", "4 h"), ("24", "24 h"))
SERIES = (
    ("on_time_rate", "On-time rate (%)"),
    ("first_attempt_rate", "First-attempt rate (%)"),
    ("cost_per_delivery", "Cost per delivery"),
)
# The table (and so the CSV): one row per bucket of the chosen scope, in this column order.
TABLE_COLUMNS = (
    ("bucket", "Bucket start (UTC)"),
    ("scope", "Scope"),
    ("attempts", "Attempts"),
    ("deliveries", "Deliveries"),
    ("on_time_rate", "On-time rate"),
    ("first_attempt_rate", "First-attempt rate"),
    ("cost_per_delivery", "Cost per delivery"),
    ("labor_cost", "Labor cost"),
    ("p95_driver_idle_s", "Driver idle p95 (s)"),
)
DARK = {
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "font": {"color": "#e8eaf0", "size": 14},
}
GRID = "#2a3140"


ALERT_COLOURS = {"opened": "#ff6b61", "resolved": "#3fb950"}


def series_figure(
    rows: list[dict[str, Any]], changes: list[dict[str, Any]], alerts: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return the three time series on one shared time axis, every mode change and alert mark drawn on each."""
    count = len(SERIES)
    gap = 0.08
    height = (1 - gap * (count - 1)) / count
    x = [row["bucket"] for row in rows]
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        **DARK,
        "margin": {"l": 70, "r": 20, "t": 30, "b": 40},
        "showlegend": False,
        "height": 640,
        "hovermode": "x unified",
        "xaxis": {"type": "date", "gridcolor": GRID, "anchor": f"y{count}", "showspikes": True},
        "shapes": [],
        "annotations": [],
    }
    for index, (metric, label) in enumerate(SERIES):
        axis = "" if index == 0 else str(index + 1)
        scale = 100 if metric.endswith("_rate") else 1
        y = [None if row.get(metric) is None else round(row[metric] * scale, 3) for row in rows]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label,
                "x": x,
                "y": y,
                "xaxis": "x",
                "yaxis": f"y{axis}",
                "connectgaps": False,
                "line": {"width": 2},
            }
        )
        top = 1 - index * (height + gap)
        layout[f"yaxis{axis}"] = {
            "domain": [top - height, top],
            "gridcolor": GRID,
            "zeroline": False,
            "title": {"text": label, "font": {"size": 13}},
            "automargin": True,
        }
        for change in changes:
            layout["shapes"].append(
                {
                    "type": "line",
                    "xref": "x",
                    "yref": f"y{axis} domain",
                    "x0": change["time"],
                    "x1": change["time"],
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": "#f0b429" if change["enabled"] else "#8fb8ff", "width": 2, "dash": "dot"},
                }
            )
            layout["annotations"].append(
                {
                    "x": change["time"],
                    "xref": "x",
                    "yref": f"y{axis} domain",
                    "y": 1,
                    "yanchor": "bottom",
                    "text": f"{change['mode'].replace('_', ' ')} {'on' if change['enabled'] else 'off'}",
                    "hovertext": f"{change['time'][:16].replace('T', ' ')} UTC, {change['scope']}: "
                    f"by {change['actor']} — {change['reason']}",
                    "showarrow": False,
                    "font": {"size": 11, "color": "#f0b429" if change["enabled"] else "#8fb8ff"},
                }
            )
        for mark in alerts or []:
            colour = ALERT_COLOURS[mark["kind"]]
            layout["shapes"].append(
                {
                    "type": "line",
                    "xref": "x",
                    "yref": f"y{axis} domain",
                    "x0": mark["time"],
                    "x1": mark["time"],
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": colour, "width": 1, "dash": "dash"},
                }
            )
            layout["annotations"].append(
                {
                    "x": mark["time"],
                    "xref": "x",
                    "yref": f"y{axis} domain",
                    "y": 0,
                    "yanchor": "top",
                    "text": f"alert {mark['kind']}: {mark['rule'].replace('_', ' ')}",
                    "hovertext": f"{mark['time'][:16].replace('T', ' ')} UTC, {mark['scope']} ({mark['severity']}): "
                    + mark["message"]
                    + (f" — resolved by {mark['by']}" if mark.get("by") else ""),
                    "showarrow": False,
                    "font": {"size": 11, "color": colour},
                }
            )
    return {"data": data, "layout": layout}


def failures_figure(reasons: dict[str, int]) -> dict[str, Any]:
    """Return the failure reasons as horizontal bars, most frequent on top."""
    ordered = sorted(reasons.items(), key=lambda item: item[1])
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [n for _, n in ordered],
                "y": [reason.replace("_", " ") for reason, _ in ordered],
                "marker": {"color": "#ff8b61"},
                "text": [n for _, n in ordered],
                "textposition": "auto",
            }
        ],
        "layout": {
            **DARK,
            "margin": {"l": 150, "r": 20, "t": 10, "b": 40},
            "height": 360,
            "xaxis": {"gridcolor": GRID, "title": {"text": "failed attempts"}},
            "yaxis": {"automargin": True},
        },
    }


def scatter_figure(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Return cost per delivery against on-time rate, one marker per site-day, one colour per site."""
    by_site: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        by_site.setdefault(point["site_id"], []).append(point)
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": site,
            "x": [round(p["on_time_rate"] * 100, 2) for p in site_points],
            "y": [round(p["cost_per_delivery"], 4) for p in site_points],
            "text": [f"{site} {p['day']}: {p['deliveries']} deliveries" for p in site_points],
            "marker": {"size": 12, "opacity": 0.85},
        }
        for site, site_points in sorted(by_site.items())
    ]
    return {
        "data": data,
        "layout": {
            **DARK,
            "margin": {"l": 70, "r": 20, "t": 10, "b": 50},
            "height": 360,
            "xaxis": {"gridcolor": GRID, "title": {"text": "on-time rate (%)"}},
            "yaxis": {"gridcolor": GRID, "title": {"text": "cost per delivery"}},
            "legend": {"orientation": "h"},
        },
    }


def compare_table(rows: list[dict[str, str]]) -> Any:
    """Build the before/after table of a mode change."""
    if not rows:
        return html.Div("Choose a mode change of the range to compare before and after it.", className="empty")
    head = html.Thead(html.Tr([html.Th("Metric"), html.Th("Before"), html.Th("After"), html.Th("Change")]))
    body = html.Tbody(
        [
            html.Tr(
                [html.Td(row["label"]), html.Td(row["before"]), html.Td(row["after"]), html.Td(row["delta"])],
                **{"data-metric": row["metric"]},
            )
            for row in rows
        ]
    )
    return dbc.Table([head, body], bordered=False, hover=True, color="dark", className="compare-table")


def layout(site_ids: list[str], today: date, refresh_ms: int) -> html.Div:
    """Build the trade-offs page; its callbacks fill the charts from history."""
    site_options = [{"label": "Whole network", "value": "*"}] + [{"label": s, "value": s} for s in site_ids]
    return html.Div(
        [
            html.Header(
                [html.H1("Trade-offs"), html.Div(id=ids.TRADE_AS_OF, className="as-of")], className="page-header"
            ),
            html.Div(
                [
                    dbc.RadioItems(
                        id=ids.TRADE_PRESET,
                        options=[{"label": t, "value": v} for v, t in PRESETS],
                        value="7",
                        inline=True,
                        className="presets",
                        inputClassName="btn-check",
                        labelClassName="btn btn-outline-info",
                        labelCheckedClassName="active",
                    ),
                    dcc.DatePickerRange(
                        id=ids.TRADE_DATES,
                        start_date=today.isoformat(),
                        end_date=today.isoformat(),
                        max_date_allowed=today.isoformat(),
                        display_format="YYYY-MM-DD",
                        className="dates",
                    ),
                    dcc.Dropdown(
                        id=ids.TRADE_SITE, options=site_options, value="*", clearable=False, className="trade-site"
                    ),
                ],
                className="trade-controls",
            ),
            html.Div(id=ids.TRADE_BANNER, className="banner banner-bad", hidden=True),
            html.Section(
                [
                    html.H2("On time, first attempt and cost, with every mode change"),
                    dcc.Graph(id=ids.TRADE_SERIES, config={"displaylogo": False}),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.Section(
                        [
                            html.H2("Why deliveries failed"),
                            dcc.Graph(id=ids.TRADE_FAILURES, config={"displaylogo": False}),
                        ],
                        className="panel half",
                    ),
                    html.Section(
                        [
                            html.H2("Cost against on time, per site and day"),
                            dcc.Graph(id=ids.TRADE_SCATTER, config={"displaylogo": False}),
                        ],
                        className="panel half",
                    ),
                ],
                className="two-up",
            ),
            html.Section(
                [
                    html.H2("Before and after a mode change"),
                    html.Div(
                        [
                            dcc.Dropdown(
                                id=ids.TRADE_CHANGE, options=[], placeholder="Mode change…", className="trade-change"
                            ),
                            dbc.RadioItems(
                                id=ids.TRADE_SPAN,
                                options=[{"label": t, "value": v} for v, t in SPANS],
                                value="4",
                                inline=True,
                                className="presets",
                                inputClassName="btn-check",
                                labelClassName="btn btn-outline-info",
                                labelCheckedClassName="active",
                            ),
                        ],
                        className="trade-controls",
                    ),
                    html.Div(id=ids.TRADE_COMPARE),
                ],
                className="panel",
            ),
            html.Section(
                [
                    html.Div(
                        [
                            html.H2("The figures behind the charts"),
                            dbc.Button("Download CSV", id=ids.TRADE_CSV, color="info", outline=True),
                        ],
                        className="panel-head",
                    ),
                    dag.AgGrid(
                        id=ids.TRADE_TABLE,
                        columnDefs=[{"field": field, "headerName": name} for field, name in TABLE_COLUMNS],
                        rowData=[],
                        defaultColDef={"sortable": True, "filter": True, "resizable": True, "flex": 1, "minWidth": 120},
                        dashGridOptions={
                            "theme": GRID_THEME,
                            "localeText": {"noRowsToShow": "No figure in this range."},
                        },
                        style={"height": "380px"},
                    ),
                    dcc.Download(id=ids.TRADE_DOWNLOAD),
                ],
                className="panel",
            ),
            dcc.Store(id=ids.TRADE_CHANGES),
            dcc.Interval(id=ids.TRADE_INTERVAL, interval=refresh_ms),
        ],
        className="page trade-page",
    )
