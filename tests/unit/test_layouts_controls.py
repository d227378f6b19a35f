"""Unit tests of the mode controls: rows reflect the state, read-only renders no control and refuses changes."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from callbacks.controls import apply_change
from dashboard.modes import CATALOGUE, ModeState
from layouts.controls import mode_rows


def find(component, predicate):  # type: ignore[no-untyped-def]
    found = []
    if predicate(component):
        found.append(component)
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children] if children is not None else []:
        if hasattr(child, "to_plotly_json"):
            found += find(child, predicate)
    return found


def test_rows_show_the_state_and_the_toggle_that_flips_it() -> None:
    states = {
        ("priority_only", "SEA1"): ModeState(
            "priority_only", "SEA1", True, {}, datetime(2026, 12, 3, tzinfo=UTC), "ops", "storm"
        )
    }
    rows = mode_rows(CATALOGUE, states, "SEA1", enabled=True)
    assert len(rows) == len(CATALOGUE)
    row = next(r for r in rows if getattr(r, "data-mode") == "priority_only")
    toggles = find(row, lambda c: isinstance(getattr(c, "id", None), dict))
    assert toggles[0].id == {"type": "mode-toggle", "mode": "priority_only", "scope": "SEA1", "to": "off"}
    assert find(row, lambda c: getattr(c, "data-state", None) == "on")


def test_read_only_rows_have_no_toggle() -> None:
    rows = mode_rows(CATALOGUE, {}, "*", enabled=False)
    assert all(not find(r, lambda c: isinstance(getattr(c, "id", None), dict)) for r in rows)


def test_read_only_dashboard_refuses_a_change_server_side() -> None:
    sources = SimpleNamespace(controls_enabled=False, settings=SimpleNamespace(dashboard_role="viewer"))
    pending = {"mode": "priority_only", "scope": "*", "enabled": True}
    assert apply_change(sources, pending, "storm", datetime.now(UTC)).startswith("refused")  # type: ignore[arg-type]


def test_a_change_needs_a_reason() -> None:
    calls = []
    sources = SimpleNamespace(
        controls_enabled=True,
        settings=SimpleNamespace(dashboard_role="operator", control_token_name="wall-screen-operator"),
        modes=SimpleNamespace(change=lambda *args: calls.append(args)),
    )
    pending = {"mode": "priority_only", "scope": "*", "enabled": True}
    assert "reason" in apply_change(sources, pending, "   ", datetime.now(UTC))  # type: ignore[arg-type]
    assert apply_change(sources, pending, "storm", datetime.now(UTC)) is None  # type: ignore[arg-type]
    assert calls[0][1] == "wall-screen-operator"
