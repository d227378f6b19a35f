"""Refresh of the wall screen: one view model per tick, sparklines that changed, rows when sites change, rotation."""

from __future__ import annotations

from typing import Any

from dash import ALL, ClientsideFunction, Dash, Input, Output, State, html, no_update

from callbacks.pipeline import pipeline_tiles
from dashboard.stream import PipelineStatus
from dashboard.wallboard import LastGood, SharedSnapshot, collect, collect_series
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
            sources.cache, "snapshot", settings.snapshot_s, lambda now: collect(sources, now, self.last_good)
        )
        self.series = SharedSnapshot(
            sources.cache, "series", settings.sparkline_refresh_s, lambda now: collect_series(sources, now)
        )
        self._view: tuple[dict[str, Any], dict[str, Any]] | None = None  # (snapshot, its view model)

    def view(self) -> dict[str, Any]:
        """Return this tick's view model: built once per snapshot in this process, the same for every screen.

        A refresh never queues behind the tick's computation: meanwhile it gets the previous tick's view.
        """
        snapshot = self.snapshot.get(wait=False)
        built = self._view
        if built is None or built[0] is not snapshot:
            settings = self.sources.settings
            pipeline = compact_pipeline(snapshot["pipeline"], settings.max_backlog)
            built = (snapshot, wall_layout.view_model(snapshot, settings.stale_after_s, pipeline))
            self._view = built  # a race builds it twice, never wrongly
        return built[1]


def compact_pipeline(pipeline: dict[str, Any] | None, max_backlog: int) -> list[Tile]:
    """Return the wall screen's pipeline tiles from the snapshot's pipeline status (none when unknown)."""
    if pipeline is None:
        return []
    by_key = {tile.key: tile for tile in pipeline_tiles(PipelineStatus(**pipeline), max_backlog)}
    return [by_key[key] for key in COMPACT_PIPELINE]


def spark_changes(series: dict[str, Any], versions: dict[str, str] | None) -> dict[str, Any] | None:
    """Return the sparklines whose version differs from a screen's (``{"lines": {"scope|metric": line}}``), or None."""
    versions = versions or {}
    changed = {
        wall_layout.tile_key(scope, metric): line
        for scope, lines in series.get("series", {}).items()
        for metric, line in lines.items()
        if versions.get(wall_layout.tile_key(scope, metric)) != line["version"]
    }
    return {"lines": changed} if changed else None


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


def _browser(function_name: str) -> ClientsideFunction:
    # The wall screen's browser side: assets/wall.js.
    return ClientsideFunction(namespace="wall", function_name=function_name)


def register(app: Dash, data: WallData) -> None:
    """Register the wall screen's callbacks on ``app``.

    The server answers each tick with one small store (the tick's view model,
    the same for every screen); the browser applies it to the tiles, header,
    band and footer. Sparklines likewise: the server sends the lines that
    changed, the browser patches them in.
    """

    @app.callback(
        Output(ids.WALL_VIEW, "data"),
        Input(ids.WALL_INTERVAL, "n_intervals"),
        prevent_initial_call=True,
    )
    def refresh(_n: int | None) -> dict[str, Any]:
        return data.view()

    app.clientside_callback(
        _browser("applyView"),
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
        Output(ids.WALL_RENDERED, "data"),
        Output(ids.WALL_SITES, "data"),
        Input(ids.WALL_VIEW, "data"),
        Input(ids.WALL_FOCUS, "data"),
        State(_pattern(ids.WALL_VALUE), "id"),
        State(ids.WALL_SCOPES, "data"),
        State(ids.WALL_RENDERED, "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.WALL_SPARK_VIEW, "data"),
        Input(ids.WALL_SPARK_INTERVAL, "n_intervals"),
        State(ids.WALL_SPARK_VERSIONS, "data"),
        prevent_initial_call=True,
    )
    def sparklines(_n: int | None, versions: dict[str, str] | None) -> Any:
        changes = spark_changes(data.series.get(wait=False), versions)
        return no_update if changes is None else changes

    app.clientside_callback(
        _browser("applySparklines"),
        Output(_pattern(ids.WALL_SPARK), "figure"),
        Output(ids.WALL_SPARK_VERSIONS, "data"),
        Input(ids.WALL_SPARK_VIEW, "data"),
        State(_pattern(ids.WALL_SPARK), "id"),
        State(ids.WALL_SPARK_VERSIONS, "data"),
        prevent_initial_call=True,
    )

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
        _browser("nextFocus"),
        Output(ids.WALL_FOCUS, "data"),
        Input(ids.WALL_ROTATE_INTERVAL, "n_intervals"),
        State(ids.WALL_SCOPES, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        _browser("rowClasses"),
        Output({"type": ids.WALL_ROW, "scope": ALL}, "className"),
        Input(ids.WALL_FOCUS, "data"),
        State({"type": ids.WALL_ROW, "scope": ALL}, "id"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        _browser("serverSilence"),
        Output(ids.WALL_STALE, "children"),
        Output(ids.WALL_STALE, "hidden"),
        Input(ids.WALL_INTERVAL, "n_intervals"),
        State(ids.WALL_VIEW, "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        "function(n) { return Boolean(n); }",
        Output(ids.MODES_DIALOG, "is_open"),
        Input(ids.MODES_OPEN, "n_clicks"),
        prevent_initial_call=True,
    )
