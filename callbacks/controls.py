"""Degradation mode controls: render the modes of a scope, confirm a toggle with a reason, apply it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, html, no_update

from dashboard.modes import NETWORK, validate_change
from dashboard.stream import StoreUnavailable
from datasources.sources import Sources
from layouts import controls as controls_layout
from layouts import ids

REASON_JS = "function(reason) { return !(reason && reason.trim()); }"


def panel_rows(sources: Sources, scope: str) -> list[Any]:
    """Build the mode rows of ``scope`` from the real current state (or say it cannot be read)."""
    try:
        states = sources.modes.current()
    except StoreUnavailable as error:
        return [html.Div(f"Modes unavailable: {error}", className="banner banner-bad")]
    return controls_layout.mode_rows(sources.modes.catalogue, states, scope, sources.controls_enabled)


def controls(sources: Sources, site_ids: list[str], scope: str) -> html.Div:
    """Build the controls for a page, scoped to ``scope`` at first."""
    return controls_layout.panel(site_ids, scope, panel_rows(sources, scope), sources.controls_enabled)


def describe(pending: dict[str, Any]) -> str:
    """Return the confirmation's sentence for a pending change."""
    verb = "Turn ON" if pending["enabled"] else "Turn OFF"
    return (
        f"{verb} “{pending['mode'].replace('_', ' ')}” for {controls_layout.scope_name(pending['scope'])}. "
        "The change takes effect at once and is recorded in the audit."
    )


def apply_change(sources: Sources, pending: dict[str, Any] | None, reason: str | None, now: datetime) -> str | None:
    """Apply a confirmed change as the dashboard's operator; return an error message, or None when done.

    The role check is repeated here: a read-only dashboard never changes a
    mode, whatever request reaches the server.
    """
    if not sources.controls_enabled:
        return f"refused: this dashboard's role ({sources.settings.dashboard_role}) may not change modes"
    if not pending:
        return "nothing to confirm"
    try:
        change = validate_change(
            pending["mode"], {"site_id": pending["scope"], "enabled": pending["enabled"], "reason": reason or ""}
        )
        sources.modes.change(change, sources.settings.control_token_name, now)
    except ValueError as error:
        return str(error)
    except StoreUnavailable as error:
        return f"not applied: {error}"
    return None


def register(app: Dash, sources: Sources) -> None:
    """Register the controls' callbacks on ``app`` (the same ids serve the wall screen and the site page)."""

    @app.callback(
        Output(ids.MODE_PANEL, "children"),
        Input(ids.MODE_SCOPE, "value"),
        Input(ids.MODE_REFRESH, "data"),
        prevent_initial_call=True,
    )
    def render(scope: str | None, _version: int | None) -> list[Any]:
        return panel_rows(sources, scope or NETWORK)

    @app.callback(
        Output(ids.MODE_CONFIRM, "is_open"),
        Output(ids.MODE_PENDING, "data"),
        Output(ids.MODE_CONFIRM_TEXT, "children"),
        Output(ids.MODE_REASON, "value"),
        Output(ids.MODE_CONFIRM_ERROR, "children"),
        Output(ids.MODE_REFRESH, "data"),
        Output(ids.MODE_RESULT, "children"),
        Input({"type": ids.MODE_TOGGLE, "mode": ALL, "scope": ALL, "to": ALL}, "n_clicks"),
        Input(ids.MODE_CONFIRM_OK, "n_clicks"),
        Input(ids.MODE_CONFIRM_CANCEL, "n_clicks"),
        State(ids.MODE_PENDING, "data"),
        State(ids.MODE_REASON, "value"),
        State(ids.MODE_REFRESH, "data"),
        prevent_initial_call=True,
    )
    def decide(
        _toggles: list[int | None],
        _ok: int | None,
        _cancel: int | None,
        pending: dict[str, Any] | None,
        reason: str | None,
        version: int | None,
    ) -> tuple[Any, ...]:
        trigger = ctx.triggered_id
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            return (no_update,) * 7  # a re-rendered button, not a click
        if trigger == ids.MODE_CONFIRM_CANCEL:
            return False, None, no_update, "", "", no_update, no_update
        if trigger == ids.MODE_CONFIRM_OK:
            error = apply_change(sources, pending, reason, datetime.now(UTC))
            if error is not None:
                return True, no_update, no_update, no_update, error, no_update, no_update
            assert pending is not None
            done = (
                f"{pending['mode'].replace('_', ' ')} turned {'on' if pending['enabled'] else 'off'} for "
                f"{controls_layout.scope_name(pending['scope'])} by {sources.settings.control_token_name}"
            )
            return False, None, no_update, "", "", (version or 0) + 1, done
        if not sources.controls_enabled:
            return False, None, no_update, "", "", no_update, "Read-only: this dashboard may not change modes."
        wanted = {"mode": trigger["mode"], "scope": trigger["scope"], "enabled": trigger["to"] == "on"}
        return True, wanted, describe(wanted), "", "", no_update, no_update

    app.clientside_callback(REASON_JS, Output(ids.MODE_CONFIRM_OK, "disabled"), Input(ids.MODE_REASON, "value"))
