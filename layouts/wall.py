"""The wall screen: the network and each site as rows of big tiles, with alerts, modes and freshness.

``layout`` builds the page once, filled; after that the browser applies each
tick's ``view_model`` (plain data, assets/wall.js) to the same elements.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from dash import dcc, html
from plotly.io.json import to_json_plotly

from dashboard.wallboard import LABELS, NO_VALUE, WALL_METRICS
from layouts import ids
from layouts.pipeline import Tile

# Plotly's own config for every sparkline: a picture, no toolbar, no hover.
SPARK_CONFIG = {"staticPlot": True, "displayModeBar": False, "responsive": True}
SPARK_COLOURS = {"ok": "#8fb8ff", "warn": "#f0b429", "bad": "#ff6b61", "none": "#5b6477"}
WINDOW_TEXT = {"15m": "last 15 min", "1h": "last hour", "24h": "last 24 h"}


def spark_id(scope: str, metric: str) -> dict[str, str]:
    """Return the id of a tile's sparkline."""
    return {"type": ids.WALL_SPARK, "scope": scope, "metric": metric}


def tile_id(kind: str, scope: str, metric: str) -> dict[str, str]:
    """Return a pattern-matching id of a tile's part (tile, value, sub)."""
    return {"type": kind, "scope": scope, "metric": metric}


def sparkline_figure(line: dict[str, Any] | None) -> dict[str, Any]:
    """Return a sparkline as a dict figure: one line, no axes, no template."""
    x = [] if line is None else line["x"]
    y = [] if line is None else line["y"]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "x": x,
                "y": y,
                "line": {"color": SPARK_COLOURS["ok"], "width": 2, "shape": "spline", "smoothing": 0.6},
                "connectgaps": False,
                "hoverinfo": "skip",
            }
        ],
        "layout": {
            "margin": {"l": 0, "r": 0, "t": 2, "b": 2},
            "xaxis": {"visible": False, "fixedrange": True},
            "yaxis": {"visible": False, "fixedrange": True, "rangemode": "tozero"},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "showlegend": False,
        },
    }


def tile_class(state: str) -> str:
    """Return the CSS classes of a tile in a state."""
    return f"wtile wtile-{state}"


def wall_tile(scope: str, tile: dict[str, Any], line: dict[str, Any] | None) -> html.Div:
    """Build one tile: the figure, a line under it, and its sparkline."""
    metric = tile["metric"]
    return html.Div(
        [
            html.Div(
                [
                    html.Div(tile["text"], id=tile_id(ids.WALL_VALUE, scope, metric), className="wtile-value"),
                    html.Div(tile["sub"], id=tile_id(ids.WALL_SUB, scope, metric), className="wtile-sub"),
                ],
                className="wtile-text",
            ),
            dcc.Graph(
                id=spark_id(scope, metric),
                figure=sparkline_figure(line),
                config=SPARK_CONFIG,
                className="wtile-spark",
                style={"height": "100%"},
            ),
        ],
        id=tile_id(ids.WALL_TILE, scope, metric),
        className=tile_class(tile["state"]),
        title=tile["label"],
        **{"data-tile": metric, "data-scope": scope},
    )


def wall_row(row: dict[str, Any], lines: dict[str, dict[str, Any]] | None, focus: bool = False) -> html.Div:
    """Build one row: the scope's name (a link to its page) and its tiles."""
    scope = row["scope"]
    name = (
        html.Div(row["label"], className="wrow-name")
        if scope == "*"
        else dcc.Link(row["label"], href=f"/sites/{scope}", className="wrow-name")
    )
    return html.Div(
        [name, *(wall_tile(scope, row["tiles"][metric], (lines or {}).get(metric)) for metric in WALL_METRICS)],
        id={"type": ids.WALL_ROW, "scope": scope},
        className="wrow wrow-network" if scope == "*" else "wrow wrow-focus" if focus else "wrow",
        **{"data-scope": scope},
    )


def grid(snapshot: dict[str, Any], series: dict[str, Any]) -> list[Any]:
    """Build the column headers and one row per scope."""
    header = html.Div(
        [html.Div("", className="wrow-name"), *(html.Div(LABELS[m], className="whead") for m in WALL_METRICS)],
        className="wrow wrow-header",
    )
    lines = series.get("series", {})
    rows = [wall_row(row, lines.get(row["scope"])) for row in snapshot["rows"]]
    if len(rows) == 1:
        rows.append(html.Div("No site has sent an event yet: the rows appear with the first event.", className="empty"))
    return [header, *rows]


def alert_chip(alert: dict[str, Any]) -> Any:
    """Build one alert of the band: a link to the panel that explains it (when there is one)."""
    attributes = {"data-alert": alert["severity"]}
    if not alert.get("href"):
        return html.Span(alert["text"], className=f"chip chip-{alert['severity']}", **attributes)
    return html.Span(
        dcc.Link(alert["text"], href=alert["href"], className="chip-link"),
        className=f"chip chip-{alert['severity']}",
        **attributes,
    )


def band(snapshot: dict[str, Any], limit: int = 6) -> list[Any]:
    """Build the band of open alerts and active degradation modes."""
    alerts = snapshot["alerts"]
    alert_chips = [alert_chip(alert) for alert in alerts[:limit]]
    if len(alerts) > limit:
        alert_chips.append(html.Span(f"+{len(alerts) - limit} more", className="chip chip-more"))
    if not alerts:
        alert_chips = [html.Span("No open alert", className="chip chip-ok")]
    modes = snapshot["modes"]
    mode_chips = [
        html.Span(
            f"{mode['mode'].replace('_', ' ')} · {'network' if mode['site_id'] == '*' else mode['site_id']}",
            className="chip chip-mode",
            title=f"by {mode['changed_by']}: {mode['reason']}",
            **{"data-mode": f"{mode['mode']}|{mode['site_id']}"},
        )
        for mode in modes
    ] or [html.Span("No degradation mode active", className="chip chip-ok")]
    return [
        html.Div([html.Span(f"Alerts ({len(alerts)})", className="band-title"), *alert_chips], className="band-part"),
        html.Div(
            [html.Span(f"Modes ({len(modes)})", className="band-title"), *mode_chips],
            className="band-part band-modes",
        ),
    ]


def pipeline_strip(tiles: list[Tile]) -> list[Any]:
    """Build the compact pipeline health strip from the pipeline page's tiles."""
    if not tiles:
        return [html.Span("Pipeline figures unavailable", className="ptile ptile-bad")]
    return [
        html.Span(
            [html.Span(t.label, className="ptile-label"), html.Span(t.value, className="ptile-value")],
            className=f"ptile ptile-{t.state}",
            **{"data-ptile": t.key},
        )
        for t in tiles
    ]


def freshness_text(snapshot: dict[str, Any]) -> str:
    """Return the header's freshness line: the pipeline's lag and the last event time."""
    fresh = snapshot["freshness"]
    last = fresh.get("last_event_at")
    return fresh["text"] + (f" · last event {last[11:19]} UTC" if last else " · no event yet")


def banner_text(snapshot: dict[str, Any], stale_after_s: float) -> str:
    """Return the warning over the tiles: stores down, or figures older than the threshold (else empty)."""
    parts = list(snapshot["errors"])
    lag = snapshot["freshness"].get("lag_s")
    if lag is not None and lag > stale_after_s:
        parts.insert(0, f"STALE: figures are {lag:,.0f} s behind the events (threshold {stale_after_s:,.0f} s)")
    return " — ".join(parts)


def tile_key(scope: str, metric: str) -> str:
    """Return the key of a tile in the view model: "scope|metric"."""
    return f"{scope}|{metric}"


def rendered(children: list[Any]) -> dict[str, Any]:
    """Return components as the JSON Dash sends for them, with a fingerprint that tells whether a screen has them."""
    text = to_json_plotly(children)
    return {"key": hashlib.blake2b(text.encode(), digest_size=6).hexdigest(), "children": orjson.loads(text)}


def view_model(snapshot: dict[str, Any], stale_after_s: float, pipeline_tiles: list[Tile]) -> dict[str, Any]:
    """Return what the wall screen shows of a snapshot, as plain data that assets/wall.js applies to the page.

    Tiles are keyed by ``tile_key``; the band and the pipeline strip are
    rendered components with a fingerprint, so a screen swaps them only when
    they change. Every screen gets the same view in a tick.
    """
    return {
        "as_of": snapshot["as_of"],
        "stale_after_s": stale_after_s,
        "as_of_text": f"data as of {snapshot['as_of_text']}",
        "freshness": freshness_text(snapshot),
        "banner": banner_text(snapshot, stale_after_s),
        "scopes": [row["scope"] for row in snapshot["rows"]],
        "tiles": {
            tile_key(row["scope"], metric): {"text": t["text"], "sub": t["sub"], "class": tile_class(t["state"])}
            for row in snapshot["rows"]
            for metric, t in row["tiles"].items()
        },
        "missing": {"text": NO_VALUE, "sub": "", "class": tile_class("none")},
        "focus": dict(snapshot["focus"]),
        "band": rendered(band(snapshot)),
        "pipeline": rendered(pipeline_strip(pipeline_tiles)),
    }


def layout(
    snapshot: dict[str, Any],
    series: dict[str, Any],
    *,
    kiosk: bool,
    rotate_s: int,
    refresh_ms: int,
    spark_ms: int,
    stale_after_s: float,
    pipeline_tiles: list[Tile],
    controls: Any | None,
) -> html.Div:
    """Build the wall screen, filled with the current snapshot so the first paint is complete."""
    view = view_model(snapshot, stale_after_s, pipeline_tiles)
    header_right = [html.Div(view["freshness"], id=ids.WALL_FRESHNESS, className="wall-fresh")]
    if controls is not None:
        header_right.append(controls)
    return html.Div(
        [
            html.Header(
                [
                    html.Div(
                        [
                            html.Span("Control tower", className="wall-title"),
                            html.Span(
                                f"tiles: {WINDOW_TEXT.get(snapshot['window'], snapshot['window'])}"
                                " · sparklines: last hours",
                                className="wall-window",
                            ),
                        ]
                    ),
                    html.Div(view["as_of_text"], id=ids.WALL_AS_OF, className="wall-as-of"),
                    html.Div(header_right, className="wall-header-right"),
                ],
                className="wall-header",
            ),
            html.Div(view["banner"], id=ids.WALL_BANNER, className="banner banner-bad", hidden=not view["banner"]),
            html.Div(id=ids.WALL_STALE, className="banner banner-bad", hidden=True),
            html.Div(band(snapshot), id=ids.WALL_BAND, className="wall-band"),
            html.Div(grid(snapshot, series), id=ids.WALL_GRID, className="wall-grid"),
            html.Footer(
                [
                    html.Div(pipeline_strip(pipeline_tiles), id=ids.WALL_PIPELINE, className="wall-pipeline"),
                    html.Div("", id=ids.WALL_FOCUS_TEXT, className="wall-focus-text"),
                ],
                className="wall-footer",
            ),
            dcc.Interval(id=ids.WALL_INTERVAL, interval=refresh_ms),
            dcc.Interval(id=ids.WALL_SPARK_INTERVAL, interval=spark_ms),
            dcc.Interval(id=ids.WALL_ROTATE_INTERVAL, interval=max(1, rotate_s) * 1000, disabled=not rotate_s),
            dcc.Store(id=ids.WALL_SCOPES, data=view["scopes"]),
            dcc.Store(id=ids.WALL_SITES),
            dcc.Store(id=ids.WALL_FOCUS, data=None),
            dcc.Store(id=ids.WALL_VIEW, data=view),
            dcc.Store(id=ids.WALL_RENDERED, data={"band": view["band"]["key"], "pipeline": view["pipeline"]["key"]}),
            dcc.Store(id=ids.WALL_SPARK_VIEW),
            dcc.Store(id=ids.WALL_SPARK_VERSIONS, data=_versions(series)),
        ],
        className="wall kiosk" if kiosk else "wall",
    )


def _versions(series: dict[str, Any]) -> dict[str, str]:
    return {
        f"{scope}|{metric}": line["version"]
        for scope, lines in series.get("series", {}).items()
        for metric, line in lines.items()
    }
