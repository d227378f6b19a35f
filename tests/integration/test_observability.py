"""GET /metrics (Prometheus text format), /healthz and /readyz against real Redis and PostgreSQL."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.alerting import AlertEvaluator
from dashboard.db import head_revision
from dashboard.settings import Settings
from tests.helpers import make_event
from tests.integration.test_api_events import drain, post

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    """Return every sample of /metrics by (name, sorted labels), after checking it parses."""
    response = client.get("/metrics")  # no token: internal network
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_counters_move_as_events_are_posted(client, token, runtime):
    before = scrape(client)
    assert value(before, "tower_redis_up") == 1
    for name in ("tower_events_accepted_total", "tower_events_processed_total", "tower_pipeline_backlog"):
        assert value(before, name) == 0  # this test's own key prefix starts empty

    ingest = token("ingest")
    batch = [make_event(event_id="m1"), make_event(event_id="m2"), make_event("delivery.attempted", attempt=0)]
    assert post(client, ingest, batch).status_code == 202
    assert post(client, ingest, [make_event(event_id="m1")]).status_code == 202  # a duplicate
    middle = scrape(client)
    assert value(middle, "tower_events_accepted_total") == 2
    assert value(middle, "tower_events_duplicates_total") == 1
    assert value(middle, "tower_events_rejected_total") == 1
    assert value(middle, "tower_pipeline_backlog") == 2
    assert value(middle, "tower_pipeline_oldest_unprocessed_age_seconds") >= 0
    assert (
        value(middle, "tower_events_rejected_by_field_total", field="data.attempt")
        - value(before, "tower_events_rejected_by_field_total", field="data.attempt")
        == 1
    )
    assert (
        value(middle, "tower_ingest_request_seconds_count") - value(before, "tower_ingest_request_seconds_count") == 2
    )

    drain(runtime)
    AlertEvaluator(runtime).evaluate()
    after = scrape(client)
    assert value(after, "tower_events_processed_total") == 2
    assert value(after, "tower_pipeline_backlog") == 0
    assert value(after, "tower_events_dead_lettered_total") == 0
    assert value(after, "tower_dead_letters_waiting") == 0
    assert value(after, "tower_alert_evaluations_total") == 1
    assert value(after, "tower_alert_evaluation_seconds_count") >= 1


def test_body_rejections_count_under_body(client, token):
    before = value(scrape(client), "tower_events_rejected_by_field_total", field="body")
    assert post(client, token("ingest"), b"{oops").status_code == 400
    assert value(scrape(client), "tower_events_rejected_by_field_total", field="body") == before + 1


def test_dash_callbacks_are_timed(client):
    before = value(scrape(client), "tower_dash_callback_seconds_count")
    client.post("/_dash-update-component", json={"output": "nothing.children", "inputs": [], "changedPropIds": []})
    assert value(scrape(client), "tower_dash_callback_seconds_count") == before + 1


def test_healthz_answers_without_a_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_when_everything_is_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"redis": "ok", "database": "ok", "schema": head_revision()}


@pytest.fixture
def app_on(settings: Settings):  # type: ignore[no-untyped-def]
    """Build the app on modified settings; dispose of its stores afterwards."""
    from dashboard.runtime import Runtime
    from dashboard.webapp import create_app

    runtimes = []

    def build(**changes: str):  # type: ignore[no-untyped-def]
        runtime = Runtime.open(settings.model_copy(update=changes))
        runtimes.append(runtime)
        return create_app(runtime=runtime).server.test_client()

    yield build
    for runtime in runtimes:
        runtime.engine.dispose()
        runtime.redis.close()


def test_readyz_names_redis_when_it_is_down(app_on, caplog):
    client = app_on(redis_url=CLOSED_PORT_REDIS)
    with caplog.at_level(logging.CRITICAL):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"].startswith("unreachable") and body["database"] == "ok" and body["schema"] == head_revision()
    metrics = client.get("/metrics")  # still answers, and says Redis is down
    assert metrics.status_code == 200
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.get_data(as_text=True))
        for sample in family.samples
    }
    assert samples["tower_redis_up"] == 0
    assert "tower_events_accepted_total" not in samples


def test_readyz_names_an_old_schema(app_on, tmp_path):
    client = app_on(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert (body["redis"], body["database"]) == ("ok", "ok")
    assert body["schema"].startswith("at nothing, this code needs") and "migrate" in body["schema"]


def test_readyz_names_the_database_when_it_is_down(app_on):
    client = app_on(database_url="postgresql://postgres@127.0.0.1:1/none")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"] == "ok" and body["database"].startswith("unreachable")


def test_rejections_are_logged_with_the_event_identity(client, token, caplog):
    bad = make_event("delivery.attempted", event_id="bad-1", source="/drivers/D9/app", site_id="PDX2", attempt=0)
    with caplog.at_level(logging.DEBUG, logger="dashboard.api"):
        post(client, token("ingest"), [bad, "not an event"])
    records = [r for r in caplog.records if r.getMessage() == "event_rejected"]
    assert [(r.event_id, r.source, r.site_id, r.field) for r in records] == [
        ("bad-1", "/drivers/D9/app", "PDX2", "data.attempt"),
        (None, None, None, "event"),
    ]
