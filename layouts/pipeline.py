"""The pipeline page: the ingest path's live counters in big tiles."""

from __future__ import annotations

from dataclasses import dataclass

from dash import dcc, html

from layouts import ids

REFRESH_MS = 1000


@dataclass(frozen=True)
class Tile:
    """One figure on screen: a label, its value as text, and a state for colour."""

    key: str
    label: str
    value: str
    state: str = "ok"  # ok | warn | bad


def tile(item: Tile) -> html.Div:
    """Build one tile."""
    return html.Div(
        [html.Div(item.label, className="tile-label"), html.Div(item.value, className="tile-value")],
        className=f"tile tile-{item.state}",
        **{"data-tile": item.key},
    )


def layout() -> html.Div:
    """Build the pipeline page; the tiles are filled by the refresh callback."""
    return html.Div(
        [
            html.Header(
                [
                    html.H1("Ingest pipeline"),
                    html.Div(id=ids.PIPELINE_AS_OF, className="as-of"),
                ],
                className="page-header",
            ),
            html.Div(id=ids.PIPELINE_ERROR, className="banner", hidden=True),
            html.Div(id=ids.PIPELINE_TILES, className="tiles"),
            dcc.Interval(id=ids.PIPELINE_INTERVAL, interval=REFRESH_MS),
        ],
        className="page",
    )
