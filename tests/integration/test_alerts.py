"""Alerts with real stores: the evaluator's lifecycle, the API, one evaluator among many, the simulator."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dashboard.alerting import AlertEvaluator, PolicyFile, count_evaluations
from dashboard.alerts import Condition, Plan
from dashboard.db import alerts, migrate
from dashboard.runtime import Runtime
from dashboard.settings import Settings
from dashboard.simulator import Config, IngestorSink, simulate, site_ids
from datasources.alerts import alerts_between, apply_plan, list_alerts
from tests.helpers import make_event
from tests.integration.test_api_events import drain, post

NOW = datetime.now(UTC).replace(microsecond=0)
# Short durations and holds, so a test steps through the lifecycle with a few fixed "now"s.
TEST_POLICIES = """
[rules.labor_imbalance]
duration_s = 0
min_backlog = 5
[rules.dock_queue]
duration_s = 20
hold_s = 30
"""


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


@pytest.fixture
def policy_file(tmp_path: Path) -> PolicyFile:
    path = tmp_path / "policies.toml"
    path.write_text(TEST_POLICIES)
    return PolicyFile(path)


@pytest.fixture
def evaluator(runtime: Runtime, policy_file: PolicyFile) -> AlertEvaluator:
    return AlertEvaluator(runtime, policy_file, interval_s=0.1)


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def alert_rows(runtime: Runtime) -> list:
    with runtime.engine.connect() as connection:
        return connection.execute(sa.select(alerts).order_by(alerts.c.id)).all()


def open_alert(runtime: Runtime, rule: str = "dock_queue", site_id: str = "SEA1") -> int:
    """Open an alert as the evaluator would, and return its id."""
    condition = Condition(rule, site_id, "warning", f"{site_id}: something is wrong", "do something")
    with runtime.engine.begin() as connection:
        return apply_plan(connection, Plan(NOW, [condition], {}, [condition]))[0]


# -- the lifecycle with real stores -------------------------------------------------------


def test_dock_queue_opens_once_and_resolves_after_its_hold(client, token, runtime, evaluator):
    queue = [
        make_event("dock.status_changed", time=ago(30), dock_id="D1", status="out_of_service", reason="motor"),
        make_event("dock.status_changed", time=ago(30), dock_id="D2", status="open"),
        make_event("truck.arrived", time=ago(10), route_id="R1", dock_id="D2"),
    ]
    assert post(client, token("ingest"), queue).status_code == 202
    drain(runtime)

    first = evaluator.evaluate(NOW)
    assert [c.key for c in first.true_now] == [("dock_queue", "SEA1")] and first.open == []  # 20 s to hold
    evaluator.evaluate(NOW + timedelta(seconds=20))
    for seconds in (30, 40, 50):  # still true: the same alert, never a second one
        evaluator.evaluate(NOW + timedelta(seconds=seconds))
    rows = alert_rows(runtime)
    assert len(rows) == 1
    alert = rows[0]
    assert (alert.rule, alert.site_id, alert.status, alert.severity) == ("dock_queue", "SEA1", "open", "warning")
    assert "door D1 out of service while 1 truck waits" in alert.message
    assert "bring D1 back into service" in alert.suggestion

    viewer = headers(token("viewer"))
    listed = client.get("/api/v1/alerts?status=open", headers=viewer).get_json()
    assert [a["id"] for a in listed] == [alert.id]
    assert set(listed[0]) == {
        "id",
        "rule",
        "site_id",
        "severity",
        "status",
        "opened_at",
        "acknowledged_by",
        "comment",
        "resolved_at",
        "message",
        "suggestion",
    }

    clear = [
        make_event("dock.status_changed", time=ago(1), dock_id="D1", status="open"),
        make_event("truck.loading_started", time=ago(1), route_id="R1", dock_id="D2"),
    ]
    assert post(client, token("ingest"), clear).status_code == 202
    drain(runtime)
    evaluator.evaluate(NOW + timedelta(seconds=60))  # clear for 10 s of a 30 s hold: still open
    assert alert_rows(runtime)[0].status == "open"
    resolved = evaluator.evaluate(NOW + timedelta(seconds=80))
    assert resolved.resolve == [alert.id]
    row = alert_rows(runtime)[0]
    assert (row.status, row.resolved_by) == ("resolved", "auto")
    assert client.get("/api/v1/alerts?status=open", headers=viewer).get_json() == []
    history = client.get("/api/v1/alerts?status=resolved&site_id=SEA1", headers=viewer).get_json()
    assert [(a["id"], a["status"]) for a in history] == [(alert.id, "resolved")]
    assert history[0]["resolved_at"].startswith((NOW + timedelta(seconds=80)).strftime("%Y-%m-%dT%H:%M:%S"))

    # A new episode opens a new alert: the history keeps both.
    assert (
        post(
            client, token("ingest"), [make_event("truck.arrived", time=ago(0.5), route_id="R2", dock_id="D2")]
        ).status_code
        == 202
    )
    drain(runtime)
    evaluator.policies.current()  # unchanged file: no reload
    later = NOW + timedelta(seconds=100)
    evaluator.evaluate(later)
    assert len(alert_rows(runtime)) == 1  # a truck waiting at an open door is no queue alert
    assert post(
        client,
        token("ingest"),
        [make_event("dock.status_changed", time=ago(0.2), dock_id="D1", status="out_of_service")],
    )
    drain(runtime)
    evaluator.evaluate(later + timedelta(seconds=10))
    evaluator.evaluate(later + timedelta(seconds=30))
    rows = alert_rows(runtime)
    assert [(r.status) for r in rows] == ["resolved", "open"]


def test_the_evaluator_carries_condition_times_across_processes(runtime, policy_file, client, token):
    events = [
        make_event("dock.status_changed", time=ago(30), dock_id="D1", status="out_of_service"),
        make_event("truck.arrived", time=ago(10), route_id="R1", dock_id="D2"),
    ]
    post(client, token("ingest"), events)
    drain(runtime)
    AlertEvaluator(runtime, policy_file).evaluate(NOW)  # starts timing the condition
    successor = AlertEvaluator(Runtime.open(runtime.settings), policy_file)  # another process takes over
    assert successor.evaluate(NOW + timedelta(seconds=25)).open[0].key == ("dock_queue", "SEA1")


def test_an_acknowledged_alert_still_resolves_on_its_own(client, token, runtime, evaluator):
    alert_id = open_alert(runtime, "pipeline_lag", "*")
    response = client.post(
        f"/api/v1/alerts/{alert_id}/ack", json={"comment": "looking"}, headers=headers(token("operator"))
    )
    assert response.status_code == 200
    evaluator.evaluate(NOW + timedelta(seconds=119))  # pipeline_lag holds 120 s after last_true_at (NOW)
    assert alert_rows(runtime)[0].status == "acknowledged"
    evaluator.evaluate(NOW + timedelta(seconds=120))
    assert alert_rows(runtime)[0].status == "resolved"


def test_only_one_unresolved_alert_per_rule_and_scope(runtime):
    open_alert(runtime, "dock_queue", "SEA1")
    open_alert(runtime, "dock_queue", "PDX2")
    with pytest.raises(sa_exc.IntegrityError):
        open_alert(runtime, "dock_queue", "SEA1")
    with runtime.engine.begin() as connection:
        connection.execute(alerts.update().values(status="resolved"))
    open_alert(runtime, "dock_queue", "SEA1")  # resolved ones do not count
    assert len(alert_rows(runtime)) == 3


def test_dead_letters_open_pipeline_lag_on_the_embedded_stores(tmp_path, policy_file):
    embedded = Runtime.open(Settings(var_dir=tmp_path))
    migrate(embedded.engine)
    try:
        evaluator = AlertEvaluator(embedded, policy_file)
        assert evaluator.evaluate(NOW).open == []
        embedded.redis.xadd(embedded.keys.dead, {"entry_id": "1-0", "error": "refused", "tries": 5})
        opened = evaluator.evaluate(NOW + timedelta(seconds=1)).open
        assert [c.key for c in opened] == [("pipeline_lag", "*")]
        assert "1 event in the dead-letter stream" in opened[0].message
        evaluator.evaluate(NOW + timedelta(seconds=2))
        assert [(a.rule, a.status) for a in list_alerts(embedded.engine)] == [("pipeline_lag", "open")]
        with pytest.raises(sa_exc.IntegrityError):  # SQLite's partial unique index too
            open_alert(embedded, "pipeline_lag", "*")
    finally:
        embedded.engine.dispose()


# -- ack and resolve through the API ------------------------------------------------------


def test_ack_and_resolve_with_roles_and_validation(client, token, runtime):
    alert_id = open_alert(runtime)
    other = open_alert(runtime, "stuck_orders", "PDX2")
    operator, admin = token("operator", "ops-anna"), token("admin", "admin-bo")
    ack = f"/api/v1/alerts/{alert_id}/ack"

    for role in ("viewer", "site_lead", "ingest"):
        assert client.post(ack, json={"comment": "x"}, headers=headers(token(role))).status_code == 403
    assert client.post(ack, json={"comment": "x"}).status_code == 401
    assert client.get("/api/v1/alerts", headers=headers(token("ingest"))).status_code == 403
    for body in ({}, {"comment": ""}, {"comment": "  "}, {"comment": 3}, ["x"]):
        response = client.post(ack, json=body, headers=headers(operator))
        assert response.status_code == 400, body
        assert "comment" in response.get_json()["error"] or "body" in response.get_json()["error"]
    assert client.post(ack, data=b"{not json", headers=headers(operator)).status_code == 400
    assert client.post(ack, headers=headers(operator)).status_code == 400  # no body: the comment is required
    assert client.post("/api/v1/alerts/999999/ack", json={"comment": "x"}, headers=headers(operator)).status_code == 404
    assert client.post("/api/v1/alerts/abc/ack", json={"comment": "x"}, headers=headers(operator)).status_code == 404

    acked = client.post(ack, json={"comment": "moving trucks to D4"}, headers=headers(operator))
    assert acked.status_code == 200
    body = acked.get_json()
    assert (body["status"], body["acknowledged_by"], body["comment"]) == (
        "acknowledged",
        "ops-anna",
        "moving trucks to D4",
    )
    assert body["resolved_at"] is None

    viewer = headers(token("viewer"))
    assert [a["id"] for a in client.get("/api/v1/alerts?status=acknowledged", headers=viewer).get_json()] == [alert_id]
    assert [a["id"] for a in client.get("/api/v1/alerts?site_id=PDX2", headers=viewer).get_json()] == [other]
    assert [a["id"] for a in client.get("/api/v1/alerts", headers=viewer).get_json()] == [other, alert_id]
    assert client.get("/api/v1/alerts?status=closed", headers=viewer).status_code == 400
    assert client.get("/api/v1/alerts?site_id=no%20such", headers=viewer).status_code == 400

    resolve = f"/api/v1/alerts/{alert_id}/resolve"
    assert client.post(resolve, headers=viewer).status_code == 403
    assert client.post(resolve, json={"comment": ""}, headers=headers(admin)).status_code == 400
    resolved = client.post(resolve, headers=headers(admin))
    assert resolved.status_code == 200
    assert resolved.get_json()["status"] == "resolved" and resolved.get_json()["resolved_at"]
    assert alert_rows(runtime)[0].resolved_by == "admin-bo"
    again = client.post(resolve, headers=headers(admin))
    assert again.status_code == 409 and "already resolved" in again.get_json()["error"]
    assert client.post(ack, json={"comment": "late"}, headers=headers(operator)).status_code == 409
    assert client.post("/api/v1/alerts/999999/resolve", headers=headers(admin)).status_code == 404
    with_comment = client.post(
        f"/api/v1/alerts/{other}/resolve", json={"comment": "fixed by hand"}, headers=headers(operator)
    )
    assert with_comment.get_json()["comment"] == "fixed by hand"


# -- exactly one evaluator ----------------------------------------------------------------


def test_exactly_one_of_three_evaluators_evaluates_and_another_takes_over(settings, runtime, policy_file):
    stops = [threading.Event() for _ in range(3)]
    evaluators = [
        AlertEvaluator(Runtime.open(settings), policy_file, interval_s=0.05, lease_ttl_s=1.0) for _ in range(3)
    ]
    threads = [
        threading.Thread(target=evaluator.run, args=(stop,), daemon=True)
        for evaluator, stop in zip(evaluators, stops, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        counts = count_evaluations(runtime.redis, runtime.keys)
        assert len(counts) == 1, counts
        (leader,) = counts
        assert counts[leader] >= 5
        assert sorted(e.evaluations > 0 for e in evaluators) == [False, False, True]

        index = next(i for i, e in enumerate(evaluators) if e.owner == leader)
        stops[index].set()  # the leader stops (and gives the lease up)
        threads[index].join(5)
        before = count_evaluations(runtime.redis, runtime.keys)[leader]
        time.sleep(1.0)
        counts = count_evaluations(runtime.redis, runtime.keys)
        assert counts[leader] == before
        successors = [owner for owner in counts if owner != leader]
        assert len(successors) == 1 and counts[successors[0]] >= 3
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(5)


def test_a_dead_leader_is_replaced_when_its_lease_runs_out(settings, runtime, policy_file):
    dead = AlertEvaluator(Runtime.open(settings), policy_file, interval_s=0.05, lease_ttl_s=1.0)
    assert dead.lease.hold()  # took the lease, then "crashed": never extends nor releases it
    stop = threading.Event()
    live = AlertEvaluator(Runtime.open(settings), policy_file, interval_s=0.05, lease_ttl_s=0.5)
    thread = threading.Thread(target=live.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        assert live.evaluations == 0
        deadline = time.monotonic() + 3
        while live.evaluations == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.evaluations > 0
    finally:
        stop.set()
        thread.join(5)


# -- with the simulator -------------------------------------------------------------------

# A fixed afternoon: both shifts' pickers have started, a wave of trucks is at the doors.
SIM_END = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)
SITES = site_ids(3, 1)
SITE = SITES[1]


def simulated(runtime: Runtime, scenario: str) -> None:
    config = Config(sites=3, seed=1, history_days=0.25, scenarios=[(scenario, SITE)])
    simulate(config, IngestorSink(runtime.ingestor()), end=SIM_END)
    drain(runtime)


def test_picker_sick_wave_opens_labor_imbalance_for_its_site(runtime, evaluator):
    simulated(runtime, "picker_sick_wave")
    result = evaluator.evaluate(SIM_END)
    opened = [c for c in result.open if c.rule == "labor_imbalance"]
    assert [c.site_id for c in opened] == [SITE]
    assert f"to {SITE}" in (opened[0].suggestion or "")
    listed = list_alerts(runtime.engine, "open", SITE)
    assert "labor_imbalance" in [a.rule for a in listed]


def test_dock_outage_opens_dock_queue_for_its_site(runtime, evaluator):
    simulated(runtime, "dock_outage")
    evaluator.evaluate(SIM_END - timedelta(seconds=30))
    result = evaluator.evaluate(SIM_END)
    opened = [c for c in result.open if c.rule == "dock_queue"]
    assert [c.site_id for c in opened] == [SITE]
    assert "out of service while" in opened[0].message


def test_alerts_between_gives_openings_and_resolutions_for_chart_marks(client, token, runtime):
    first = open_alert(runtime, "dock_queue", "SEA1")
    network = open_alert(runtime, "pipeline_lag", "*")
    open_alert(runtime, "stuck_orders", "PDX2")
    client.post(f"/api/v1/alerts/{first}/resolve", headers=headers(token("operator")))
    window = (NOW - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=5))
    marks = alerts_between(runtime.engine, *window, site_id="SEA1")
    assert [(a.id, a.status) for a in marks] == [(first, "resolved"), (network, "open")]
    assert len(alerts_between(runtime.engine, *window)) == 3
    assert alerts_between(runtime.engine, NOW - timedelta(hours=2), NOW - timedelta(hours=1)) == []
