"""Unit tests of the degradation mode catalogue, validation and the mode.changed event (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard.events import validate
from dashboard.modes import (
    CATALOGUE,
    NETWORK,
    AuditQuery,
    ModeChange,
    ModeState,
    in_force,
    mode_event,
    resolve_params,
    validate_change,
)

NOW = datetime(2026, 12, 4, 9, 30, 15, 250_000, tzinfo=UTC)


def body(**fields):  # type: ignore[no-untyped-def]
    return {"site_id": "SEA1", "enabled": True, "reason": "WMS slow", **fields}


def test_catalogue_holds_the_six_modes_with_descriptions():
    assert list(CATALOGUE) == [
        "pause_reslotting",
        "pause_bulk_adjustments",
        "conservative_promises",
        "eta_cache_fallback",
        "admission_control",
        "priority_only",
    ]
    for mode in CATALOGUE.values():
        assert mode.description and "\n" not in mode.description
        for param in mode.params:
            assert param.minimum <= param.default <= param.maximum


def test_typed_parameters_and_their_defaults():
    assert CATALOGUE["conservative_promises"].defaults() == {"extra_minutes": 30}
    assert CATALOGUE["admission_control"].defaults() == {"max_orders_per_hour": 200}
    extra = CATALOGUE["conservative_promises"].param("extra_minutes")
    assert extra is not None and (extra.minimum, extra.maximum) == (0, 240)
    cap = CATALOGUE["admission_control"].param("max_orders_per_hour")
    assert cap is not None and (cap.minimum, cap.maximum) == (1, 100_000)
    for name in ("pause_reslotting", "pause_bulk_adjustments", "eta_cache_fallback", "priority_only"):
        assert CATALOGUE[name].defaults() == {}


def test_a_valid_change():
    change = validate_change("conservative_promises", body(reason="  storm  ", params={"extra_minutes": 45}))
    assert change == ModeChange("conservative_promises", "SEA1", True, "storm", {"extra_minutes": 45})


@pytest.mark.parametrize("site_id", ["*", "SEA1", "a_b-C", "X" * 32])
def test_site_id_is_a_site_or_the_network(site_id):
    assert validate_change("priority_only", body(site_id=site_id)).site_id == site_id


def test_params_may_be_omitted_or_partial():
    assert validate_change("admission_control", body()).params == {}
    assert validate_change("admission_control", body(params={})).params == {}
    assert validate_change("pause_reslotting", body(enabled=False)).params == {}


@pytest.mark.parametrize(
    ("mode", "payload", "message"),
    [
        ("no_such_mode", body(), "mode: unknown mode 'no_such_mode'; choose one of pause_reslotting"),
        ("priority_only", [body()], "body: must be a JSON object, got list"),
        ("priority_only", "on", "body: must be a JSON object, got str"),
        ("priority_only", None, "body: must be a JSON object, got NoneType"),
        ("priority_only", body(enable=True), "enable: unknown field"),
        ("priority_only", {"enabled": True, "reason": "x"}, "site_id: is required"),
        ("priority_only", {"site_id": "SEA1", "reason": "x"}, "enabled: is required"),
        ("priority_only", {"site_id": "SEA1", "enabled": True}, "reason: is required"),
        ("priority_only", body(site_id="SEA 1"), "site_id: must be '*' (the whole network) or match"),
        ("priority_only", body(site_id="X" * 33), "site_id: must be '*'"),
        ("priority_only", body(site_id="**"), "site_id: must be '*'"),
        ("priority_only", body(site_id=None), "site_id: must be '*'"),
        ("priority_only", body(enabled="true"), "enabled: must be true or false, got 'true'"),
        ("priority_only", body(enabled=1), "enabled: must be true or false, got 1"),
        ("priority_only", body(reason=""), "reason: must not be empty"),
        ("priority_only", body(reason=" \t\n"), "reason: must not be empty"),
        ("priority_only", body(reason=None), "reason: must be a string, got None"),
        ("priority_only", body(reason="x" * 1001), "reason: must be at most 1000 characters"),
        ("priority_only", body(reason="a\x00b"), "reason: must not contain the NUL character"),
        ("priority_only", body(params=[]), "params: must be a JSON object, got []"),
        ("priority_only", body(params=None), "params: must be a JSON object, got None"),
        ("priority_only", body(params={"x": 1}), "params.x: unknown parameter of priority_only (it takes: none)"),
        (
            "admission_control",
            body(params={"max_orders": 5}),
            "params.max_orders: unknown parameter of admission_control (it takes: max_orders_per_hour)",
        ),
        (
            "conservative_promises",
            body(params={"extra_minutes": 241}),
            "params.extra_minutes: must be an integer from 0 to 240, got 241",
        ),
        ("conservative_promises", body(params={"extra_minutes": -1}), "params.extra_minutes: must be an integer"),
        ("conservative_promises", body(params={"extra_minutes": 30.0}), "got 30.0"),
        ("conservative_promises", body(params={"extra_minutes": "30"}), "got '30'"),
        ("conservative_promises", body(params={"extra_minutes": True}), "got True"),
        ("admission_control", body(params={"max_orders_per_hour": 0}), "from 1 to 100000, got 0"),
        ("admission_control", body(params={"max_orders_per_hour": 100_001}), "got 100001"),
    ],
)
def test_invalid_changes_name_the_field(mode, payload, message):
    with pytest.raises(ValueError) as raised:
        validate_change(mode, payload)
    assert message in str(raised.value)


def test_bounds_are_inclusive():
    for minutes in (0, 240):
        change = validate_change("conservative_promises", body(params={"extra_minutes": minutes}))
        assert change.params == {"extra_minutes": minutes}
    for cap in (1, 100_000):
        assert (
            validate_change("admission_control", body(params={"max_orders_per_hour": cap})).params[
                "max_orders_per_hour"
            ]
            == cap
        )


def test_resolve_params_layers_given_over_previous_over_defaults():
    mode = CATALOGUE["conservative_promises"]
    assert resolve_params(mode, None, {}) == {"extra_minutes": 30}
    assert resolve_params(mode, None, {"extra_minutes": 10}) == {"extra_minutes": 10}
    assert resolve_params(mode, {"extra_minutes": 60}, {}) == {"extra_minutes": 60}
    assert resolve_params(mode, {"extra_minutes": 60}, {"extra_minutes": 5}) == {"extra_minutes": 5}
    # What the catalogue no longer takes falls back to the default or is dropped.
    assert resolve_params(mode, {"extra_minutes": 999, "gone": 1}, {}) == {"extra_minutes": 30}
    assert resolve_params(CATALOGUE["priority_only"], {"old": 3}, {}) == {}


def test_state_round_trips_through_its_json_shape():
    state = ModeState("admission_control", "SEA1", True, {"max_orders_per_hour": 80}, NOW, "ops", "storm")
    shape = state.as_dict()
    assert shape == {
        "mode": "admission_control",
        "site_id": "SEA1",
        "enabled": True,
        "params": {"max_orders_per_hour": 80},
        "changed_at": "2026-12-04T09:30:15.250000Z",
        "changed_by": "ops",
        "reason": "storm",
    }
    assert ModeState.from_dict(shape) == state
    default = ModeState.default(CATALOGUE["conservative_promises"])
    assert default.as_dict() == {
        "mode": "conservative_promises",
        "site_id": "*",
        "enabled": False,
        "params": {"extra_minutes": 30},
        "changed_at": None,
        "changed_by": None,
        "reason": None,
    }
    assert ModeState.from_dict(default.as_dict()) == default


def test_in_force_takes_the_site_then_the_network():
    site = ModeState("admission_control", "SEA1", True, {"max_orders_per_hour": 50}, NOW, "a", "r")
    network = ModeState("admission_control", NETWORK, True, {"max_orders_per_hour": 500}, NOW, "a", "r")
    off_here = ModeState("admission_control", "PDX2", False, {"max_orders_per_hour": 5}, NOW, "a", "r")
    states = {(s.mode, s.site_id): s for s in (site, network, off_here)}
    assert in_force(states, "admission_control", "SEA1") == site
    assert in_force(states, "admission_control", "LAX3") == network
    assert in_force(states, "admission_control", "PDX2") == network
    assert in_force(states, "priority_only", "SEA1") is None
    assert in_force({("admission_control", "SEA1"): site}, "admission_control", "PDX2") is None


def test_mode_event_is_a_valid_mode_changed_event():
    state = ModeState("conservative_promises", NETWORK, True, {"extra_minutes": 45}, NOW, "ops-token", "storm")
    event = mode_event(state, 17)
    parsed = validate(event, NOW + timedelta(seconds=1))
    assert (parsed.source, parsed.type, parsed.site_id, parsed.time) == ("/tower/modes", "mode.changed", "*", NOW)
    assert event["id"] == f"mode-audit-17-{int(NOW.timestamp() * 1000)}"
    assert event["data"] == {
        "site_id": "*",
        "mode": "conservative_promises",
        "enabled": True,
        "actor": "ops-token",
        "reason": "storm",
        "params": {"extra_minutes": 45},
    }
    assert mode_event(state, 17)["id"] == event["id"]
    assert mode_event(state, 18)["id"] != event["id"]


def test_audit_query():
    assert AuditQuery.from_args({}) == AuditQuery(None, None, 100)
    assert AuditQuery.from_args({"mode": "priority_only", "site_id": "*", "limit": "5"}) == AuditQuery(
        "priority_only", "*", 5
    )
    for args, message in (
        ({"limit": "0"}, "limit: must be an integer from 1 to 1000"),
        ({"limit": "1001"}, "limit:"),
        ({"limit": "ten"}, "limit:"),
        ({"mode": "nope"}, "mode: unknown mode 'nope'"),
        ({"site_id": "a b"}, "site_id: must be '*'"),
    ):
        with pytest.raises(ValueError, match=message):
            AuditQuery.from_args(args)
