"""Degradation mode controls: each mode's state in a scope, toggles, and a confirmation with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.modes import NETWORK, Mode, ModeState
from layouts import ids


def toggle_id(mode: str, scope: str, to: str) -> dict[str, str]:
    """Return the id of the button that turns ``mode`` on or off (``to``) in ``scope``."""
    return {"type": ids.MODE_TOGGLE, "mode": mode, "scope": scope, "to": to}


def scope_name(scope: str) -> str:
    """Return a scope as people say it."""
    return "the whole network" if scope == NETWORK else f"site {scope}"


def mode_rows(
    catalogue: dict[str, Mode], states: dict[tuple[str, str], ModeState], scope: str, enabled: bool
) -> list[Any]:
    """Build one row per mode: its state in ``scope`` (and network-wide), and a toggle when allowed."""
    rows = []
    for name, mode in catalogue.items():
        own = states.get((name, scope))
        network = states.get((name, NETWORK))
        on = bool(own and own.enabled)
        detail = ""
        if own is not None and own.changed_by:
            detail = (
                f"{'on' if on else 'off'} since {own.changed_at:%Y-%m-%d %H:%M} UTC by {own.changed_by}: {own.reason}"
            )
        inherited = scope != NETWORK and not on and network is not None and network.enabled
        badge = html.Span(
            dbc.Badge(
                "ON" if on else "on network-wide" if inherited else "off",
                color="danger" if on else "warning" if inherited else "secondary",
                className="mode-badge",
            ),
            **{"data-state": "on" if on else "off"},
        )
        control = (
            dbc.Button(
                "Turn off" if on else "Turn on",
                id=toggle_id(name, scope, "off" if on else "on"),
                color="light" if on else "danger",
                outline=on,
                size="lg",
                className="mode-toggle",
            )
            if enabled
            else None
        )
        rows.append(
            html.Div(
                [
                    html.Div(
                        [
                            html.Div([html.Span(name.replace("_", " "), className="mode-name"), badge]),
                            html.Div(mode.description, className="mode-desc"),
                            html.Div(detail, className="mode-detail"),
                        ],
                        className="mode-text",
                    ),
                    control,
                ],
                className="mode-row",
                **{"data-mode": name, "data-scope": scope},
            )
        )
    return rows


def scope_picker(site_ids: list[str], value: str) -> dcc.Dropdown:
    """Build the scope chooser: the whole network or one site."""
    options = [{"label": "Whole network", "value": NETWORK}] + [{"label": s, "value": s} for s in site_ids]
    return dcc.Dropdown(id=ids.MODE_SCOPE, options=options, value=value, clearable=False, className="mode-scope")


@dataclass(frozen=True)
class DialogIds:
    """The ids of one confirm-with-a-reason dialog and its stores."""

    dialog: str
    text: str
    reason: str
    error: str
    cancel: str
    ok: str
    pending: str
    refresh: str


def reason_dialog(title: str, label: str, ok_label: str, ok_color: str, dialog_ids: DialogIds) -> html.Div:
    """Build a dialog that says what will happen and needs a written reason before its OK button."""
    return html.Div(
        [
            dbc.Modal(
                [
                    dbc.ModalHeader(dbc.ModalTitle(title)),
                    dbc.ModalBody(
                        [
                            html.P(id=dialog_ids.text, className="confirm-text"),
                            dbc.Label(label, html_for=dialog_ids.reason),
                            dbc.Textarea(id=dialog_ids.reason, value="", maxLength=1000, rows=3),
                            html.Div(id=dialog_ids.error, className="confirm-error"),
                        ]
                    ),
                    dbc.ModalFooter(
                        [
                            dbc.Button("Cancel", id=dialog_ids.cancel, color="secondary"),
                            dbc.Button(ok_label, id=dialog_ids.ok, color=ok_color, disabled=True),
                        ]
                    ),
                ],
                id=dialog_ids.dialog,
                is_open=False,
                backdrop="static",
                zindex=1070,
            ),
            dcc.Store(id=dialog_ids.pending),
            dcc.Store(id=dialog_ids.refresh, data=0),
        ]
    )


def confirmation() -> Any:
    """Build the confirmation dialog: what will change, a required reason, confirm and cancel."""
    return reason_dialog(
        "Confirm the change",
        "Reason (required, kept in the audit)",
        "Confirm",
        "danger",
        DialogIds(
            ids.MODE_CONFIRM,
            ids.MODE_CONFIRM_TEXT,
            ids.MODE_REASON,
            ids.MODE_CONFIRM_ERROR,
            ids.MODE_CONFIRM_CANCEL,
            ids.MODE_CONFIRM_OK,
            ids.MODE_PENDING,
            ids.MODE_REFRESH,
        ),
    )


def panel(site_ids: list[str], scope: str, rows: list[Any], enabled: bool) -> html.Div:
    """Build the controls: a scope chooser, the modes, the last result and (when allowed) the confirmation."""
    note = (
        None
        if enabled
        else html.Div("Read-only: this dashboard's role may not change modes.", className="mode-readonly")
    )
    return html.Div(
        [
            html.Div(
                [html.Span("Scope", className="mode-scope-label"), scope_picker(site_ids, scope)],
                className="mode-scope-row",
            ),
            note,
            html.Div(id=ids.MODE_RESULT, className="mode-result"),
            html.Div(rows, id=ids.MODE_PANEL, className="mode-panel"),
            confirmation() if enabled else None,
        ],
        className="mode-controls",
    )


def dialog(content: html.Div) -> html.Div:
    """Build the wall screen's "Modes" button and the dialog that holds the controls."""
    return html.Div(
        [
            dbc.Button("Degradation modes", id=ids.MODES_OPEN, color="secondary", size="lg", className="modes-open"),
            dbc.Modal(
                [dbc.ModalHeader(dbc.ModalTitle("Degradation modes")), dbc.ModalBody(content)],
                id=ids.MODES_DIALOG,
                is_open=False,
                size="xl",
                scrollable=True,
            ),
        ],
        className="modes-dialog-wrap",
    )
