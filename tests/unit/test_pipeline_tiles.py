"""Unit tests of the pipeline page's tiles: their text and their health state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callbacks.pipeline import pipeline_tiles
from dashboard.stream import PipelineStatus
from layouts.pipeline import Tile

MAX_BACKLOG = 1000

HEALTHY = PipelineStatus(
    backlog=0,
    accepted=0,
    duplicates=0,
    rejected=0,
    processed=0,
    dead_letters=0,
    oldest_unprocessed_age_s=None,
    accepted_per_s=0.0,
    processed_per_s=0.0,
    consumers=2,
    redis_memory_bytes=1_000_000,
    as_of=1_700_000_000.0,
)


def tiles(status: PipelineStatus = HEALTHY, max_backlog: int = MAX_BACKLOG) -> dict[str, Tile]:
    return {item.key: item for item in pipeline_tiles(status, max_backlog)}


def test_tiles_in_display_order() -> None:
    assert [item.key for item in pipeline_tiles(HEALTHY, MAX_BACKLOG)] == [
        "accepted_per_s",
        "processed_per_s",
        "backlog",
        "oldest",
        "accepted",
        "duplicates",
        "rejected",
        "dead_letters",
        "consumers",
    ]


def test_healthy_pipeline_is_all_ok() -> None:
    assert {key: item.state for key, item in tiles().items()} == dict.fromkeys(tiles(), "ok")


def test_counts_have_thousands_separators() -> None:
    status = replace(
        HEALTHY, backlog=999, accepted=1_234_567, duplicates=12_345, rejected=7, dead_letters=1_000, consumers=3
    )

    values = {key: item.value for key, item in tiles(status).items()}

    assert values["accepted"] == "1,234,567"
    assert values["duplicates"] == "12,345"
    assert values["rejected"] == "7"
    assert values["dead_letters"] == "1,000"
    assert values["backlog"] == "999"
    assert values["consumers"] == "3"


def test_rates_are_whole_events_per_second() -> None:
    status = replace(HEALTHY, accepted_per_s=1234.4, processed_per_s=12.6)

    assert tiles(status)["accepted_per_s"].value == "1,234/s"
    assert tiles(status)["processed_per_s"].value == "13/s"
    assert tiles(HEALTHY)["accepted_per_s"].value == "0/s"


def test_labels() -> None:
    labels = {key: item.label for key, item in tiles().items()}

    assert labels["backlog"] == "Backlog"
    assert labels["oldest"] == "Oldest unprocessed"
    assert labels["consumers"] == "Ingest workers"


@pytest.mark.parametrize(
    ("age_s", "text"),
    [
        (None, "none"),
        (0.0, "0.0 s"),
        (5.04, "5.0 s"),
        (59.9, "59.9 s"),
        (60.0, "1.0 min"),
        (150.0, "2.5 min"),
        (7200.0, "120.0 min"),
    ],
)
def test_oldest_unprocessed_age_in_seconds_then_minutes(age_s: float | None, text: str) -> None:
    assert tiles(replace(HEALTHY, oldest_unprocessed_age_s=age_s))["oldest"].value == text


@pytest.mark.parametrize(
    ("backlog", "state"),
    [(0, "ok"), (499, "ok"), (500, "warn"), (999, "warn"), (1000, "bad"), (250_000, "bad")],
)
def test_backlog_state_against_its_bound(backlog: int, state: str) -> None:
    assert tiles(replace(HEALTHY, backlog=backlog), max_backlog=1000)["backlog"].state == state


@pytest.mark.parametrize(
    ("age_s", "state"),
    [(None, "ok"), (0.0, "ok"), (9.99, "ok"), (10.0, "warn"), (59.99, "warn"), (60.0, "bad"), (3600.0, "bad")],
)
def test_lag_warns_at_10_s_and_is_bad_at_60_s(age_s: float | None, state: str) -> None:
    assert tiles(replace(HEALTHY, oldest_unprocessed_age_s=age_s))["oldest"].state == state


@pytest.mark.parametrize(("dead_letters", "state"), [(0, "ok"), (1, "bad"), (40, "bad")])
def test_any_dead_letter_is_bad(dead_letters: int, state: str) -> None:
    assert tiles(replace(HEALTHY, dead_letters=dead_letters))["dead_letters"].state == state


@pytest.mark.parametrize(("rejected", "state"), [(0, "ok"), (1, "warn")])
def test_rejected_events_warn(rejected: int, state: str) -> None:
    assert tiles(replace(HEALTHY, rejected=rejected))["rejected"].state == state


@pytest.mark.parametrize(("consumers", "state"), [(0, "bad"), (1, "ok"), (8, "ok")])
def test_no_ingest_worker_is_bad(consumers: int, state: str) -> None:
    assert tiles(replace(HEALTHY, consumers=consumers))["consumers"].state == state


def test_informational_tiles_stay_ok_however_large() -> None:
    status = replace(HEALTHY, accepted=10**9, duplicates=10**9, accepted_per_s=1e6, processed_per_s=0.0)

    states = {key: item.state for key, item in tiles(status).items()}

    assert [states[key] for key in ("accepted_per_s", "processed_per_s", "accepted", "duplicates")] == ["ok"] * 4
