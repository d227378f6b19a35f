"""The golden fixture, posted through the API: every expected query answers within tolerance."""

from __future__ import annotations

import json

import orjson
import pytest
import sqlalchemy as sa

from tests.helpers import GOLDEN, golden_events, golden_invalid
from tests.integration.test_api_events import drain, post
from tests.metrics_assert import mismatches

EXPECTED = json.loads((GOLDEN / "expected_metrics.json").read_text())


@pytest.fixture
def golden_loaded(client, token, runtime):  # type: ignore[no-untyped-def]
    ingest = token("ingest")
    events = golden_events()
    for start in range(0, len(events), 400):
        response = post(client, ingest, events[start : start + 400])
        assert response.status_code == 202, response.get_json()
    drain(runtime)
    return token("viewer")


def test_every_expected_query_answers_within_tolerance(client, golden_loaded):
    failures = []
    for query in EXPECTED["queries"]:
        params = {"start": query["start"], "end": query["end"]}
        if query["site_id"] is not None:
            params["site_id"] = query["site_id"]
        response = client.get(
            "/api/v1/metrics", query_string=params, headers={"Authorization": f"Bearer {golden_loaded}"}
        )
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert (body["site_id"], body["start"], body["end"]) == (query["site_id"], query["start"], query["end"])
        for problem in mismatches(query["expected"], body):
            failures.append(f"{query['site_id']} {query['start']}..{query['end']}: {problem}")
    assert failures == []


def test_history_holds_each_unique_event_once(runtime, golden_loaded):
    from tests.conftest import count_events

    assert count_events(runtime.engine) == EXPECTED["unique_events"]


def test_history_keeps_the_network_minutes_only_as_its_sites_rows(runtime, golden_loaded):
    """The network query cut at 06:07 and 09:51 above reads its edge minutes from the sites' rows."""
    with runtime.engine.connect() as connection:
        grains = {
            (scope == "*", grain)
            for scope, grain in connection.execute(sa.text("SELECT DISTINCT scope, grain FROM rollups"))
        }
    assert grains == {(False, "m"), (False, "h"), (False, "d"), (True, "h"), (True, "d")}


def test_every_invalid_line_is_rejected(client, token, runtime):
    ingest = token("ingest")
    for case in golden_invalid():
        response = post(client, ingest, orjson.dumps(case["event"]))
        assert response.status_code == 400, case["why"]
        body = response.get_json()
        assert (body["accepted"], body["duplicates"], len(body["rejected"])) == (0, 0, 1), case["why"]
    assert runtime.redis.xlen(runtime.keys.stream) == 0
