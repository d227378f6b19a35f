"""The golden fixture, posted through the API: every expected query answers within tolerance.

Whether the hour and day rollups were folded from the minutes or not: the
answers may never depend on when the last fold ran.
"""

from __future__ import annotations

import json
from collections import defaultdict

import orjson
import pytest
import sqlalchemy as sa

from dashboard.aggregates import aware, truncate
from dashboard.folding import fold_marked
from tests.helpers import GOLDEN, golden_events, golden_invalid
from tests.integration.test_api_events import drain, post
from tests.metrics_assert import mismatches

EXPECTED = json.loads((GOLDEN / "expected_metrics.json").read_text())


FOLDS = ("never folded", "folded", "folded halfway")


@pytest.fixture(params=FOLDS)
def golden_loaded(request, client, token, runtime):  # type: ignore[no-untyped-def]
    """Post the golden events, folding the rollups never, at the end, or halfway (the rest stays unfolded)."""
    ingest = token("ingest")
    events = golden_events()
    halfway = len(events) // 2 if request.param == "folded halfway" else len(events)
    for part in (events[:halfway], events[halfway:]):
        for start in range(0, len(part), 400):
            response = post(client, ingest, part[start : start + 400])
            assert response.status_code == 202, response.get_json()
        if part:
            drain(runtime)
            if request.param != "never folded":
                assert fold_marked(runtime.engine) is not None
    request.node.folds = request.param
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


def _stored_rollups(runtime) -> dict[tuple[str, str, object, str], float]:  # type: ignore[no-untyped-def]
    with runtime.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT scope, grain, bucket, field, value FROM rollups")).all()
    return {
        (row.scope, row.grain, aware(row.bucket) if row.grain != "m" else row.bucket, row.field): row.value
        for row in rows
    }


def test_history_keeps_the_network_minutes_only_as_its_sites_rows(runtime, golden_loaded, request):
    """The network query cut at 06:07 and 09:51 above reads its edge minutes from the sites' rows."""
    grains = {(scope == "*", grain) for scope, grain, _, _ in _stored_rollups(runtime)}
    if request.node.folds == "never folded":
        assert grains == {(False, "m")}  # workers write the sites' minutes only
    else:
        assert grains == {(False, "m"), (False, "h"), (False, "d"), (True, "h"), (True, "d")}


def test_a_fold_makes_every_hour_and_day_row_the_sum_of_the_minutes(runtime, golden_loaded):
    assert fold_marked(runtime.engine) is not None
    with runtime.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM rollups_unfolded")).scalar_one() == 0
        minutes = connection.execute(sa.text("SELECT scope, bucket, field, value FROM rollups WHERE grain = 'm'")).all()
    expected: dict[tuple[str, str, object, str], float] = defaultdict(float)
    for scope, bucket, name, value in minutes:
        for grain in ("h", "d"):
            for owner in (scope, "*"):
                expected[(owner, grain, truncate(aware(bucket), grain), name)] += value
    stored = {key: value for key, value in _stored_rollups(runtime).items() if key[1] != "m"}
    assert {key: value for key, value in stored.items() if value != 0} == {
        key: value for key, value in expected.items() if value != 0
    }
    assert all(value == expected[key] for key, value in stored.items())  # a zero row is a zero sum
    assert len(stored) > 100
    assert all(key[2].minute == 0 and (key[1] == "h" or key[2].hour == 0) for key in stored)


def test_every_invalid_line_is_rejected(client, token, runtime):
    ingest = token("ingest")
    for case in golden_invalid():
        response = post(client, ingest, orjson.dumps(case["event"]))
        assert response.status_code == 400, case["why"]
        body = response.get_json()
        assert (body["accepted"], body["duplicates"], len(body["rejected"])) == (0, 0, 1), case["why"]
    assert runtime.redis.xlen(runtime.keys.stream) == 0
