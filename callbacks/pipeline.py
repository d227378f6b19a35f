"""Refresh of the pipeline page: read the live source, build the tiles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dash import Dash, Input, Output

from dashboard.stream import PipelineStatus
from datasources.live import LiveSource, StoreUnavailable
from layouts import ids
from layouts.pipeline import Tile, tile

LAG_WARN_S = 10.0
LAG_BAD_S = 60.0


def _count(value: int) -> str:
    return f"{value:,}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def pipeline_tiles(status: PipelineStatus, max_backlog: int) -> list[Tile]:
    """Return the tiles for a pipeline status, coloured by how healthy each figure is."""
    lag = status.oldest_unprocessed_age_s or 0.0
    backlog_state = "bad" if status.backlog >= max_backlog else "warn" if status.backlog >= max_backlog // 2 else "ok"
    return [
        Tile("accepted_per_s", "Ingest rate", f"{status.accepted_per_s:,.0f}/s"),
        Tile("processed_per_s", "Processed", f"{status.processed_per_s:,.0f}/s"),
        Tile("backlog", "Backlog", _count(status.backlog), backlog_state),
        Tile(
            "oldest",
            "Oldest unprocessed",
            _age(status.oldest_unprocessed_age_s),
            "bad" if lag >= LAG_BAD_S else "warn" if lag >= LAG_WARN_S else "ok",
        ),
        Tile("accepted", "Accepted", _count(status.accepted)),
        Tile("duplicates", "Duplicates dropped", _count(status.duplicates)),
        Tile("rejected", "Rejected", _count(status.rejected), "warn" if status.rejected else "ok"),
        Tile("dead_letters", "Dead letters", _count(status.dead_letters), "bad" if status.dead_letters else "ok"),
        Tile("consumers", "Ingest workers", _count(status.consumers), "ok" if status.consumers else "bad"),
    ]


def register(app: Dash, live: LiveSource, max_backlog: int) -> None:
    """Register the pipeline page's refresh callback on ``app``."""

    @app.callback(
        Output(ids.PIPELINE_TILES, "children"),
        Output(ids.PIPELINE_AS_OF, "children"),
        Output(ids.PIPELINE_ERROR, "children"),
        Output(ids.PIPELINE_ERROR, "hidden"),
        Input(ids.PIPELINE_INTERVAL, "n_intervals"),
    )
    def refresh(_n: int | None) -> tuple[Any, ...]:
        try:
            status = live.pipeline()
        except StoreUnavailable as error:
            return (
                [tile(Tile("unavailable", "Redis", "unreachable", "bad"))],
                "",
                f"Live figures unavailable: {error}",
                False,
            )
        as_of = datetime.fromtimestamp(status.as_of, UTC).strftime("%H:%M:%S UTC")
        return [tile(t) for t in pipeline_tiles(status, max_backlog)], f"data as of {as_of}", "", True
