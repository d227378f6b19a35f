"""Refresh of the wall screen: values every tick, sparklines by Patch, rows when sites change, focus rotation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import ALL, Dash, Input, Output, Patch, State, html, no_update

from callbacks.pipeline import pipeline_tiles
from dashboard.stream import PipelineStatus
from dashboard.wallboard import NO_VALUE, LastGood, SharedSnapshot, collect, collect_series
from datasources.sources import Sources
from layouts import ids
from layouts import wall as wall_layout
from layouts.pipeline import Tile
from layouts.shell import Route

# The pipeline figures the wall screen shows, in this order (the full set is at /pipeline).
COMPACT_PIPELINE = ("accepted_per_s", "backlog", "duplicates", "rejected", "dead_letters", "oldest")


class WallData:
    """The wall screen's two shared computations: the snapshot every tick, the sparklines less often."""

    def __init__(self, sources: Sources) -> None:
        settings = sources.settings
        self.sources = sources
        # The last figures each store gave: shown, marked stale, while that store is down.
        self.last_good = LastGood()
        self.snapshot = SharedSnapshot(
            sources.cache, "snapshot", settings.refresh_s, lambda now: collect(sources, now, self.last_good)
        )
        self.series = SharedSnapshot(
            sources.cache, "series", settings.sparkline_refresh_s, lambda now: collect_series(sources, now)
        )


def compact_pipeline(pipeline: dict[str, Any] | None, max_backlog: int) -> list[Tile]:
    """Return the wall screen's pipeline tiles from the snapshot's pipeline status (none when unknown)."""
    if pipeline is None:
        return []
    by_key = {tile.key: tile for tile in pipeline_tiles(PipelineStatus(**pipeline), max_backlog)}
    return [by_key[key] for key in COMPACT_PIPELINE]


def tick_outputs(
    snapshot: dict[str, Any],
    value_ids: Sequence[dict[str, str]],
    rendered_scopes: list[str] | None,
    focus: str | None,
    stale_after_s: float,
    max_backlog: int,
) -> tuple[Any, ...]:
    """Return every output of a tick: tile texts and states in ``value_ids`` order, then the page's lines."""
    tiles = {(row["scope"], metric): tile for row in snapshot["rows"] for metric, tile in row["tiles"].items()}
    missing = {"text": NO_VALUE, "sub": "", "state": "none"}
    chosen = [tiles.get((key["scope"], key["metric"]), missing) for key in value_ids]
    warning = wall_layout.banner_text(snapshot, stale_after_s)
    scopes = [row["scope"] for row in snapshot["rows"]]
    return (
        [tile["text"] for tile in chosen],
        [tile["sub"] for tile in chosen],
        [wall_layout.tile_class(tile["state"]) for tile in chosen],
        f"data as of {snapshot['as_of_text']}",
        wall_layout.freshness_text(snapshot),
        warning,
        not warning,
        wall_layout.band(snapshot),
        wall_layout.pipeline_strip(compact_pipeline(snapshot["pipeline"], max_backlog)),
        snapshot["focus"].get(focus, "") if focus else "",
        {"as_of": snapshot["as_of"], "stale_after_s": stale_after_s},
        no_update if scopes == (rendered_scopes or []) else scopes,
    )


def spark_updates(
    series: dict[str, Any], spark_ids: Sequence[dict[str, str]], versions: dict[str, str] | None
) -> tuple[list[Any], dict[str, str]]:
    """Return a Patch of the data of each sparkline that changed (no_update for the others), and the new versions."""
    versions = dict(versions or {})
    updates: list[Any] = []
    lines = series.get("series", {})
    for key in spark_ids:
        line = lines.get(key["scope"], {}).get(key["metric"])
        name = f"{key['scope']}|{key['metric']}"
        if line is None or versions.get(name) == line["version"]:
            updates.append(no_update)
            continue
        patch = Patch()
        patch["data"][0]["x"] = line["x"]
        patch["data"][0]["y"] = line["y"]
        updates.append(patch)
        versions[name] = line["version"]
    return updates, versions


def page(data: WallData, route: Route, controls: Any | None) -> html.Div:
    """Build the wall screen from this tick's shared snapshot."""
    settings = data.sources.settings
    snapshot = data.snapshot.get()
    return wall_layout.layout(
        snapshot,
        data.series.get(),
        kiosk=route.kiosk,
        rotate_s=route.rotate_s,
        refresh_ms=int(settings.refresh_s * 1000),
        spark_ms=int(settings.sparkline_refresh_s * 1000),
        stale_after_s=settings.stale_after_s,
        pipeline_tiles=compact_pipeline(snapshot["pipeline"], settings.max_backlog),
        controls=None if route.kiosk else controls,
    )


def _pattern(kind: str) -> dict[str, Any]:
    return {"type": kind, "scope": ALL, "metric": ALL}


ROTATE_JS = """
function(n, scopes) {
    const sites = (scopes || []).filter(s => s !== "*");
    if (!sites.length) { return null; }
    return sites[(n || 0) % sites.length];
}
"""
FOCUS_JS = """
function(focus, rowIds) {
    return rowIds.map(id => id.scope === "*" ? "wrow wrow-network"
        : (id.scope === focus ? "wrow wrow-focus" : "wrow"));
}
"""
CLIENT_STALE_JS = """
function(n, asOf) {
    if (!asOf) { return [window.dash_clientside.no_update, window.dash_clientside.no_update]; }
    const age = Date.now() / 1000 - asOf.as_of;
    if (age > asOf.stale_after_s) {
        return ["STALE: no fresh figures from the server for " + Math.round(age) + " s", false];
    }
    return ["", true];
}
"""


def register(app: Dash, data: WallData) -> None:
    """Register the wall screen's callbacks on ``app``."""
    settings = data.sources.settings

    @app.callback(
        Output(_pattern(ids.WALL_VALUE), "children"),
        Output(_pattern(ids.WALL_SUB), "children"),
        Output(_pattern(ids.WALL_TILE), "className"),
        Output(ids.WALL_AS_OF, "children"),
        Output(ids.WALL_FRESHNESS, "children"),
        Output(ids.WALL_BANNER, "children"),
        Output(ids.WALL_BANNER, "hidden"),
        Output(ids.WALL_BAND, "children"),
        Output(ids.WALL_PIPELINE, "children"),
        Output(ids.WALL_FOCUS_TEXT, "children"),
        Output(ids.WALL_AS_OF_EPOCH, "data"),
        Output(ids.WALL_SITES, "data"),
        Input(ids.WALL_INTERVAL, "n_intervals"),
        Input(ids.WALL_FOCUS, "data"),
        State(_pattern(ids.WALL_VALUE), "id"),
        State(ids.WALL_SCOPES, "data"),
        prevent_initial_call=True,
    )
    def refresh(_n: int | None, focus: str | None, value_ids: list[dict[str, str]], scopes: list[str] | None):  # type: ignore[no-untyped-def]
        return tick_outputs(data.snapshot.get(), value_ids, scopes, focus, settings.stale_after_s, settings.max_backlog)

    @app.callback(
        Output(_pattern(ids.WALL_SPARK), "figure"),
        Output(ids.WALL_SPARK_VERSIONS, "data"),
        Input(ids.WALL_SPARK_INTERVAL, "n_intervals"),
        State(_pattern(ids.WALL_SPARK), "id"),
        State(ids.WALL_SPARK_VERSIONS, "data"),
        prevent_initial_call=True,
    )
    def sparklines(_n: int | None, spark_ids: list[dict[str, str]], versions: dict[str, str] | None):  # type: ignore[no-untyped-def]
        return spark_updates(data.series.get(), spark_ids, versions)

    @app.callback(
        Output(ids.WALL_GRID, "children"),
        Output(ids.WALL_SCOPES, "data"),
        Input(ids.WALL_SITES, "data"),
        prevent_initial_call=True,
    )
    def rows(scopes: list[str] | None):  # type: ignore[no-untyped-def]
        snapshot = data.snapshot.get()
        return wall_layout.grid(snapshot, data.series.get()), [row["scope"] for row in snapshot["rows"]]

    app.clientside_callback(
        ROTATE_JS,
        Output(ids.WALL_FOCUS, "data"),
        Input(ids.WALL_ROTATE_INTERVAL, "n_intervals"),
        State(ids.WALL_SCOPES, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        FOCUS_JS,
        Output({"type": ids.WALL_ROW, "scope": ALL}, "className"),
        Input(ids.WALL_FOCUS, "data"),
        State({"type": ids.WALL_ROW, "scope": ALL}, "id"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        CLIENT_STALE_JS,
        Output(ids.WALL_STALE, "children"),
        Output(ids.WALL_STALE, "hidden"),
        Input(ids.WALL_INTERVAL, "n_intervals"),
        State(ids.WALL_AS_OF_EPOCH, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        "function(n) { return Boolean(n); }",
        Output(ids.MODES_DIALOG, "is_open"),
        Input(ids.MODES_OPEN, "n_clicks"),
        prevent_initial_call=True,
    )
