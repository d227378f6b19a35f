"""POST /api/v1/events and GET /api/v1/pipeline against real Redis and PostgreSQL."""

from __future__ import annotations

import json

import orjson
import pytest
import sqlalchemy as sa

from dashboard.runtime import Runtime
from dashboard.settings import Settings
from tests.conftest import count_events
from tests.helpers import make_event


def post(client, token: str, body, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        "/api/v1/events", data=data, headers={"Authorization": f"Bearer {token}", "Content-Type": content_type}
    )


def drain(runtime: Runtime) -> None:
    """Run one worker until the stream holds nothing unprocessed."""
    worker = runtime.worker()
    for _ in range(50):
        worker.step()
        if runtime.redis.hget(runtime.keys.stats, "processed") == runtime.redis.hget(runtime.keys.stats, "accepted"):
            return
    raise AssertionError("worker did not drain the stream")


def stored(runtime: Runtime) -> dict[tuple[str, str], dict]:
    with runtime.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT source, id, payload FROM events")).all()
    return {(row.source, row.id): row.payload for row in rows}


def test_single_event_is_accepted_and_reaches_history(client, token, runtime):
    event = make_event("order.created", event_id="o-1", site_id="SEA1")
    response = post(client, token("ingest"), event, "application/cloudevents+json")
    assert response.status_code == 202
    assert response.get_json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    drain(runtime)
    history = stored(runtime)
    assert list(history) == [("/sites/SEA1/wms", "o-1")]
    assert history[("/sites/SEA1/wms", "o-1")]["data"]["order_id"] == "O1"
    with runtime.engine.connect() as connection:
        row = connection.execute(sa.text("SELECT type, site_id, order_id, stream_id FROM events")).one()
    assert (row.type, row.site_id, row.order_id) == ("order.created", "SEA1", "O1")
    assert row.stream_id.count("-") == 1


def test_batch_reports_each_event(client, token, runtime):
    good = make_event(event_id="a")
    bad = make_event("delivery.attempted", event_id="b", attempt=0)
    again = dict(good)
    batch = [good, bad, again, "not an event", make_event(event_id="c")]
    response = post(client, token("ingest"), batch, "application/cloudevents-batch+json")
    assert response.status_code == 202
    body = response.get_json()
    assert (body["accepted"], body["duplicates"]) == (2, 1)
    assert [(r["index"], r["id"]) for r in body["rejected"]] == [(1, "b"), (3, None)]
    assert body["rejected"][0]["error"].startswith("data.attempt:")
    assert body["rejected"][1]["error"].startswith("event:")
    drain(runtime)
    assert set(stored(runtime)) == {("/sites/SEA1/wms", "a"), ("/sites/SEA1/wms", "c")}


def test_duplicate_keeps_the_first_content_and_is_reported(client, token, runtime):
    ingest = token("ingest")
    first = make_event("order.picked", event_id="dup", worker_id="W-FIRST")
    second = make_event("order.picked", event_id="dup", worker_id="W-SECOND")
    assert post(client, ingest, first).get_json()["accepted"] == 1
    response = post(client, ingest, second)
    assert response.status_code == 202
    assert response.get_json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    drain(runtime)
    assert stored(runtime)[("/sites/SEA1/wms", "dup")]["data"]["worker_id"] == "W-FIRST"


def test_same_id_from_two_sources_is_two_events(client, token, runtime):
    batch = [make_event(event_id="x", source="/sites/SEA1/wms"), make_event(event_id="x", source="/sites/SEA1/yard")]
    assert post(client, token("ingest"), batch).get_json()["accepted"] == 2
    drain(runtime)
    assert count_events(runtime.engine) == 2


def test_nothing_valid_is_400_with_every_reason(client, token, runtime):
    batch = [make_event(event_id="t", time="2026-10-06T10:00:00"), make_event(event_id="s", site_id="bad site")]
    response = post(client, token("ingest"), batch)
    assert response.status_code == 400
    body = response.get_json()
    assert (body["accepted"], body["duplicates"]) == (0, 0)
    assert [(r["index"], r["id"], r["error"].split(":")[0]) for r in body["rejected"]] == [
        (0, "t", "time"),
        (1, "s", "data.site_id"),
    ]
    assert runtime.redis.xlen(runtime.keys.stream) == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'"order.created"', 400, "got str"),
        (b"42", 400, "got int"),
        (b"null", 400, "got NoneType"),
        (json.dumps([{"a": 1}] * 1001).encode(), 413, "limit is 1000"),
        (b"[" + b" " * (5 * 1024 * 1024) + b"]", 413, "limit is 4194304"),
    ],
    ids=["not-json", "json-string", "json-number", "json-null", "1001-events", "5-MiB"],
)
def test_bad_bodies_are_refused_and_nothing_is_stored(client, token, runtime, body, status, message):
    response = post(client, token("ingest"), body)
    assert response.status_code == status
    text = response.get_data(as_text=True)
    assert message in text
    assert runtime.redis.xlen(runtime.keys.stream) == 0
    assert runtime.redis.hget(runtime.keys.stats, "accepted") is None


def test_backlog_at_its_bound_answers_429_and_takes_nothing(database_url, redis_url, token, runtime):
    from dashboard.webapp import create_app

    bounded = Runtime(
        Settings(redis_url=redis_url, database_url=database_url, key_prefix=runtime.keys.prefix, max_backlog=3),
        runtime.redis,
        runtime.engine,
        runtime.keys,
    )
    client = create_app(runtime=bounded).server.test_client()
    ingest = token("ingest")
    assert post(client, ingest, [make_event() for _ in range(3)]).status_code == 202
    response = post(client, ingest, [make_event(event_id="late")])
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "backlog" in response.get_json()["error"]
    assert runtime.redis.xlen(runtime.keys.stream) == 3
    drain(bounded)
    assert post(client, ingest, [make_event(event_id="late")]).status_code == 202


def test_redis_down_answers_503_with_retry_after(database_url, token, runtime):
    from dashboard.webapp import create_app

    settings = Settings(redis_url="redis://127.0.0.1:1/0", database_url=database_url, key_prefix="down")
    client = create_app(settings).server.test_client()
    response = post(client, token("ingest"), make_event())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "Redis" in response.get_json()["error"]


def test_pipeline_reports_counters_backlog_and_lag(client, token, runtime):
    ingest, viewer = token("ingest"), token("viewer")
    post(client, ingest, [make_event(event_id="1"), make_event(event_id="2"), make_event(event_id="1")])
    post(client, ingest, [make_event("delivery.attempted", event_id="3", attempt="x")])
    before = client.get("/api/v1/pipeline", headers={"Authorization": f"Bearer {viewer}"}).get_json()
    assert {k: before[k] for k in ("backlog", "accepted", "duplicates", "processed", "dead_letters")} == {
        "backlog": 2,
        "accepted": 2,
        "duplicates": 1,
        "processed": 0,
        "dead_letters": 0,
    }
    assert before["rejected"] == 1
    assert before["oldest_unprocessed_age_s"] is not None and 0 <= before["oldest_unprocessed_age_s"] < 60
    assert before["accepted_per_s"] > 0
    drain(runtime)
    after = client.get("/api/v1/pipeline", headers={"Authorization": f"Bearer {viewer}"}).get_json()
    assert (after["backlog"], after["processed"], after["oldest_unprocessed_age_s"]) == (0, 2, None)
    assert after["redis_memory_bytes"] > 100_000  # a real Redis reports its memory


def test_unknown_api_path_is_json_404(client, token):
    response = client.get("/api/v1/nope", headers={"Authorization": f"Bearer {token('viewer')}"})
    assert response.status_code == 404
    assert "error" in response.get_json()


def test_nul_characters_are_refused_before_a_202(client, token, runtime):
    bad = make_event("order.canceled", event_id="nul", reason="bad\u0000reason")
    escaped = make_event("order.canceled", event_id="ok", reason="literal \\u0000 text")
    response = post(client, token("ingest"), [bad, escaped])
    assert response.status_code == 202
    body = response.get_json()
    assert body["accepted"] == 1
    assert body["rejected"] == [{"index": 0, "id": "nul", "error": "data.reason: must not contain the NUL character"}]
