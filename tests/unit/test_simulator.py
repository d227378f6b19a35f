"""The simulator: deterministic, valid, plausible, and it reacts to scenarios and modes."""

from __future__ import annotations

import functools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from dashboard.events import validate
from dashboard.metrics import reference_metrics
from dashboard.simulator import SCENARIO_SPAN, Config, Simulation, history_start, simulate, site_ids
from tests.helpers import ListSink

END = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)  # a Wednesday afternoon
LAST_3H = (END - SCENARIO_SPAN, END)


def modes(**enabled: dict[str, Any]):  # type: ignore[no-untyped-def]
    states = {(name, "*"): SimpleNamespace(enabled=True, params=params) for name, params in enabled.items()}
    return lambda: states


@functools.cache
def run(seed: int = 5, scenarios: tuple[tuple[str, str | None], ...] = (), **mode_params: Any) -> tuple[dict, ...]:
    sink = ListSink()
    config = Config(sites=2, seed=seed, history_days=1, scenarios=list(scenarios))
    enabled = {name: dict(params) for name, params in mode_params.items()}  # params given as item tuples
    simulate(config, sink, end=END, modes=modes(**enabled) if enabled else None)
    return tuple(sink.events)


def first_site(seed: int = 5) -> str:
    return site_ids(2, seed)[0]


def backlog_state(events: tuple[dict, ...], site: str) -> tuple[int, int]:
    """Return (orders waiting to be packed, pickers on shift) at the end of the log."""
    stage: dict[str, tuple[str, str]] = {}
    shift: dict[str, tuple[str, str]] = {}
    order_types = ("order.created", "order.picked", "order.packed", "order.canceled", "order.loaded")
    for event in events:
        data, kind = event["data"], event["type"]
        if data["site_id"] != site:
            continue
        latest: dict[str, tuple[str, str]] | None = None
        if kind in order_types:
            latest, key = stage, data["order_id"]
        elif kind in ("worker.shift_started", "worker.shift_ended") and "-PI" in data["worker_id"]:
            latest, key = shift, data["worker_id"]
        if latest is not None and (key not in latest or latest[key][0] <= event["time"]):
            latest[key] = (event["time"], kind)
    waiting = sum(1 for _, kind in stage.values() if kind in ("order.created", "order.picked"))
    pickers = sum(1 for _, kind in shift.values() if kind == "worker.shift_started")
    return waiting, pickers


def metrics(events: tuple[dict, ...], site: str | None, window: tuple[datetime, datetime] = LAST_3H) -> dict:
    return reference_metrics(events, site, window[0], window[1], END)


def test_same_seed_same_sites_network_and_events():
    assert site_ids(3, 1) == site_ids(3, 1) and site_ids(3, 1) != site_ids(3, 2)
    assert len(set(site_ids(14, 9))) == 14
    first = Simulation(Config(seed=3), history_start(END, 1))
    again = Simulation(Config(seed=3), history_start(END, 1))
    assert [list(s.doors) for s in first.sites] == [list(s.doors) for s in again.sites]
    assert run(seed=5) == tuple(ListSink_events(seed=5))
    assert run(seed=5) != run(seed=6)


def ListSink_events(seed: int) -> list[dict]:
    sink = ListSink()
    simulate(Config(sites=2, seed=seed, history_days=1), sink, end=END)
    return sink.events


def test_every_event_is_valid_within_the_window_and_never_in_the_future():
    events = run()
    assert len(events) > 5000
    start = (END - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    for event in events:
        validate(event, END)
        assert start <= event["time"] <= END.strftime("%Y-%m-%dT%H:%M:%S.999Z")
    assert len({(e["source"], e["id"]) for e in events}) == len(events)
    assert {e["type"] for e in events} >= {
        "order.created",
        "order.picked",
        "order.packed",
        "order.loaded",
        "truck.arrived",
        "truck.loading_started",
        "truck.departed",
        "stop.arrived",
        "stop.departed",
        "delivery.attempted",
        "worker.shift_started",
        "worker.shift_ended",
        "slot.changed",
        "order.canceled",
    }


def test_every_order_lifecycle_is_in_order():
    lifecycle: dict[str, list[tuple[str, str, dict]]] = defaultdict(list)
    for event in run():
        if "order_id" in event["data"]:
            lifecycle[event["data"]["order_id"]].append((event["time"], event["type"], event["data"]))
    complete = 0
    for steps in lifecycle.values():
        steps.sort(key=lambda step: step[0])
        types = [kind for _, kind, _ in steps]
        if "order.created" not in types:
            continue  # created before the window: only its later steps are in it
        assert types[0] == "order.created", steps[:2]  # nothing happens to an order before it exists
        complete += 1
        rank = {"order.created": 0, "order.picked": 1, "order.packed": 2, "order.loaded": 3, "delivery.attempted": 4}
        attempt_ranks = [rank[k] for k in types if k in rank]
        # Within one attempt the stages only move forward; a failed delivery starts a new round at packing.
        rounds, current = [], []
        for value in attempt_ranks:
            if current and value < current[-1]:
                rounds.append(current)
                current = []
            current.append(value)
        rounds.append(current)
        assert rounds[0][0] == 0 and rounds[0] == sorted(rounds[0])
        for later in rounds[1:]:
            assert later[0] == 2, types  # re-packed after a failed attempt
        attempts = [data["attempt"] for _, kind, data in steps if kind == "delivery.attempted"]
        assert attempts == list(range(1, len(attempts) + 1)), types
    assert complete > 500


def test_figures_of_a_generated_day_are_plausible():
    day = metrics(run(), None, (END - timedelta(days=1), END))
    assert 0.6 <= day["on_time_rate"] <= 0.99
    assert 0.75 <= day["first_attempt_rate"] <= 0.99
    for name in ("p95_driver_idle_s", "p95_dock_wait_s", "p95_ready_to_truck_s"):
        assert day[name] is not None and day[name] > 0, name
    assert 3 <= day["cost_per_delivery"] <= 40
    assert day["failure_reasons"] and sum(day["failure_reasons"].values()) == day["attempts"] - day["deliveries"]


@pytest.mark.parametrize(
    ("scenario", "measure"),
    [
        ("dock_outage", lambda events, site: metrics(events, site)["p95_dock_wait_s"]),
        ("driver_delay_wave", lambda events, site: metrics(events, site)["p95_driver_idle_s"]),
        ("eta_unreliable", lambda events, site: metrics(events, site)["p95_driver_idle_s"]),
        ("picker_sick_wave", lambda events, site: _per_picker(backlog_state(events, site))),
        ("wms_slowdown", lambda events, site: backlog_state(events, site)[0]),
        ("demand_spike", lambda events, site: backlog_state(events, site)[0]),
    ],
)
def test_each_scenario_moves_its_metric_on_its_site_only(scenario, measure):
    site, other = site_ids(2, 5)
    calm, faulty = run(), run(scenarios=((scenario, None),))
    assert measure(faulty, site) > 1.3 * measure(calm, site), scenario
    assert measure(faulty, other) == measure(calm, other)


def _per_picker(state: tuple[int, int]) -> float:
    waiting, pickers = state
    return waiting / max(pickers, 1)


def test_scenario_on_a_named_site():
    site, other = site_ids(2, 5)
    faulty = run(scenarios=(("dock_outage", other),))
    assert metrics(faulty, other)["p95_dock_wait_s"] > 1.3 * metrics(run(), other)["p95_dock_wait_s"]
    assert metrics(faulty, site) == metrics(run(), site)


def test_conservative_promises_raise_on_time_with_later_promises():
    plain, careful = run(), run(conservative_promises=(("extra_minutes", 60),))
    assert metrics(careful, None)["on_time_rate"] > metrics(plain, None)["on_time_rate"] + 0.05
    ends = [e["data"]["promised_end"] for e in careful if e["type"] == "order.created"]
    plain_ends = [e["data"]["promised_end"] for e in plain if e["type"] == "order.created"]
    assert max(ends) > max(plain_ends)


def test_admission_control_caps_new_orders_and_lowers_the_backlog():
    spike = (("demand_spike", None),)
    capped = run(scenarios=spike, admission_control=(("max_orders_per_hour", 20),))
    site = first_site()
    hours = defaultdict(int)
    for event in capped:
        if event["type"] == "order.created" and event["data"]["site_id"] == site:
            hours[event["time"][:13]] += 1
    assert max(hours.values()) <= 20
    assert backlog_state(capped, site)[0] < 0.5 * backlog_state(run(scenarios=spike), site)[0]


def test_pausing_wms_jobs_recovers_picking_under_a_slowdown():
    site = first_site()
    slow = backlog_state(run(scenarios=(("wms_slowdown", None),)), site)[0]
    paused = backlog_state(
        run(scenarios=(("wms_slowdown", None),), pause_reslotting=(), pause_bulk_adjustments=()), site
    )[0]
    assert paused < 0.7 * slow


def test_eta_cache_fallback_restores_planned_drive_times():
    site = first_site()
    unreliable = metrics(run(scenarios=(("eta_unreliable", None),)), site)["p95_driver_idle_s"]
    cached = metrics(run(scenarios=(("eta_unreliable", None),), eta_cache_fallback=()), site)["p95_driver_idle_s"]
    assert cached < 0.6 * unreliable


def test_priority_only_works_express_orders_first():
    site = first_site()
    events = run(priority_only=())
    picked = {e["data"]["order_id"] for e in events if e["type"] == "order.picked"}
    created = {e["data"]["order_id"]: e["data"]["priority"] for e in events if e["type"] == "order.created"}
    express = [o for o, p in created.items() if p == "express"]
    standard = [o for o, p in created.items() if p == "standard"]
    assert sum(o in picked for o in express) / len(express) > 0.9
    assert sum(o in picked for o in standard) / len(standard) < 0.1
    assert site in {e["data"]["site_id"] for e in events}
