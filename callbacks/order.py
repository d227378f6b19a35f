"""The order page: its trail of events, read once when the page opens."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output

from dashboard.stream import StoreUnavailable
from datasources.sources import Sources
from layouts import ids
from layouts import order as order_layout


def trail_view(order_id: str, events: list[dict[str, Any]] | None) -> tuple[Any, ...]:
    """Return the grid rows, the summary line and the banner (text, hidden) for a trail."""
    if events is None:
        return [], "", f"No event of order {order_id!r} is in history.", False
    sites = sorted({event["site_id"] for event in events})
    own = sum(1 for event in events if event["of"] == "order")
    summary = f"{len(events)} events ({own} of the order, {len(events) - own} of its routes) · site {', '.join(sites)}"
    return order_layout.trail_rows(events), summary, "", True


def register(app: Dash, sources: Sources) -> None:
    """Register the order page's callback on ``app``."""

    @app.callback(
        Output(ids.ORDER_TRAIL, "rowData"),
        Output(ids.ORDER_SUMMARY, "children"),
        Output(ids.ORDER_BANNER, "children"),
        Output(ids.ORDER_BANNER, "hidden"),
        Input(ids.ORDER_ID, "data"),
    )
    def load(order_id: str) -> tuple[Any, ...]:
        if not 0 < len(order_id) <= 64:
            return trail_view(order_id, None)
        try:
            return trail_view(order_id, sources.state.trail(order_id))
        except StoreUnavailable as error:
            return [], "", f"History unavailable: {error}", False
