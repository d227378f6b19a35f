"""The order trail: every event of an order and of the routes it rode, in event-time order."""

from __future__ import annotations

from typing import Any

import dash_ag_grid as dag
from dash import dcc, html

from layouts import ids
from layouts.shell import GRID_THEME

TRAIL_COLUMNS = [
    {"field": "time", "headerName": "Event time (UTC)", "minWidth": 200},
    {"field": "type", "headerName": "Type", "minWidth": 170},
    {"field": "of", "headerName": "Of", "maxWidth": 100},
    {"field": "source", "headerName": "Source", "minWidth": 180},
    {"field": "received_at", "headerName": "Received (UTC)", "minWidth": 200},
    {"field": "id", "headerName": "Event id"},
    {"field": "details", "headerName": "Details", "flex": 2, "minWidth": 260},
]
_SKIP = {"site_id", "order_id"}


def _short(moment: str | None) -> str:
    return "" if not moment else moment[:23].replace("T", " ")


def trail_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the trail as grid rows, in the order the API gives (event time)."""
    return [
        {
            "seq": index,
            "time": _short(event["time"]),
            "type": event["type"],
            "of": event["of"],
            "source": event["source"],
            "received_at": _short(event["received_at"]),
            "id": event["id"],
            "details": ", ".join(f"{k}={v}" for k, v in event["data"].items() if k not in _SKIP and v is not None),
        }
        for index, event in enumerate(events)
    ]


def layout(order_id: str) -> html.Div:
    """Build the order page; a callback fills the trail."""
    return html.Div(
        [
            html.Header(
                [
                    html.H1([dcc.Link("Network", href="/", className="crumb"), " / ", f"Order {order_id}"]),
                    html.Div(id=ids.ORDER_SUMMARY, className="as-of"),
                ],
                className="page-header",
            ),
            html.Div(id=ids.ORDER_BANNER, className="banner banner-bad", hidden=True),
            dag.AgGrid(
                id=ids.ORDER_TRAIL,
                columnDefs=TRAIL_COLUMNS,
                rowData=[],
                defaultColDef={"sortable": True, "filter": True, "resizable": True, "flex": 1, "minWidth": 120},
                dashGridOptions={"localeText": {"noRowsToShow": "No event yet."}, "theme": GRID_THEME},
                style={"height": "70vh"},
            ),
            dcc.Store(id=ids.ORDER_ID, data=order_id),
        ],
        className="page",
    )
