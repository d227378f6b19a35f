"""The simulator obeys degradation modes set through the API, read as they are now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard.cli import modes_reader
from dashboard.simulator import Config, simulate, site_ids
from tests.helpers import ListSink

END = datetime.now(UTC).replace(second=0, microsecond=0)


def promise_lengths(events: list[dict]) -> set[float]:
    return {
        (datetime.fromisoformat(e["data"]["promised_end"]) - datetime.fromisoformat(e["data"]["promised_start"]))
        / timedelta(minutes=1)
        for e in events
        if e["type"] == "order.created"
    }


def run(runtime, **config) -> list[dict]:  # type: ignore[no-untyped-def]
    sink = ListSink()
    simulate(Config(sites=2, seed=4, history_days=0.25, **config), sink, end=END, modes=modes_reader(runtime))
    return sink.events


def test_modes_set_through_the_api_change_what_the_simulator_does(client, token, runtime):
    operator = {"Authorization": f"Bearer {token('operator')}"}
    assert promise_lengths(run(runtime)) == {120.0}

    site = site_ids(2, 4)[0]
    response = client.put(
        "/api/v1/modes/conservative_promises",
        json={"site_id": site, "enabled": True, "reason": "ETAs unreliable", "params": {"extra_minutes": 45}},
        headers=operator,
    )
    assert response.status_code == 200, response.get_json()
    events = run(runtime)
    by_site = {s: promise_lengths([e for e in events if e["data"]["site_id"] == s]) for s in site_ids(2, 4)}
    assert by_site[site] == {165.0}
    assert by_site[site_ids(2, 4)[1]] == {120.0}

    response = client.put(
        "/api/v1/modes/admission_control",
        json={"site_id": "*", "enabled": True, "reason": "overload", "params": {"max_orders_per_hour": 5}},
        headers=operator,
    )
    assert response.status_code == 200
    capped = run(runtime)
    hours: dict[tuple[str, str], int] = {}
    for event in capped:
        if event["type"] == "order.created":
            key = (event["data"]["site_id"], event["time"][:13])
            hours[key] = hours.get(key, 0) + 1
    assert hours and max(hours.values()) <= 5
