"""Poison entries: dead-lettered after max_tries with their error, the rest flows."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import orjson
import pytest
import redis

from dashboard.db import migrate
from dashboard.history import StoredEvent
from dashboard.runtime import Runtime
from dashboard.settings import Settings
from dashboard.stream import backlog
from dashboard.worker import IngestWorker
from tests.faults.support import key_of, numbered_event, pending_total, pipeline_stats, stored_events

pytestmark = pytest.mark.slow

VALID_PER_GROUP = 50


@pytest.fixture
def runtime(machine_redis: str, shared_database: str, key_prefix: str) -> Iterator[Runtime]:
    """A runtime on the machine's services, with a database and prefix of its own."""
    settings = Settings(
        redis_url=machine_redis,
        database_url=shared_database,
        key_prefix=key_prefix,
        claim_idle_ms=1000,
        worker_block_ms=100,
        worker_batch=40,
    )
    rt = Runtime.open(settings)
    migrate(rt.engine)
    try:
        yield rt
    finally:
        rt.redis.close()
        rt.engine.dispose()


def add_raw_entry(runtime: Runtime, payload: bytes) -> bytes:
    """XADD an entry straight onto the stream, counted as accepted like the accept script does."""
    entry_id = runtime.redis.xadd(runtime.keys.stream, {"e": payload})
    runtime.redis.hincrby(runtime.keys.stats, "accepted", 1)
    return entry_id


def run_worker_until_drained(runtime: Runtime, poison: list[bytes], timeout_s: float = 60) -> dict[bytes, list[int]]:
    """Step one in-process worker until the backlog is 0; return the tries seen per poison entry."""
    worker = runtime.worker()
    tries_seen: dict[bytes, list[int]] = {entry_id: [] for entry_id in poison}
    deadline = time.monotonic() + timeout_s
    while backlog(runtime.redis, runtime.keys) > 0:
        assert time.monotonic() < deadline, f"backlog still {backlog(runtime.redis, runtime.keys)} after {timeout_s} s"
        worker.step()
        for entry_id, seen in tries_seen.items():
            tries = runtime.redis.hget(runtime.keys.failures, entry_id)
            if tries is not None and (not seen or seen[-1] != int(tries)):
                seen.append(int(tries))
    return tries_seen


def dead_letters(client: redis.Redis, stream: str) -> dict[bytes, dict[bytes, bytes]]:
    """Return the dead-letter stream as {original entry id: fields}."""
    return {fields[b"entry_id"]: fields for _, fields in client.xrange(stream)}


def test_poison_entries_are_dead_lettered_after_max_tries(runtime: Runtime) -> None:
    ingestor = runtime.ingestor()
    valid = [numbered_event(n) for n in range(3 * VALID_PER_GROUP)]
    groups = [valid[i : i + VALID_PER_GROUP] for i in range(0, len(valid), VALID_PER_GROUP)]
    timeless = numbered_event(10_000)
    timeless["time"] = "2026-10-06T10:30:00"  # no offset: the worker cannot place it in time
    poison_payloads = [b"not json", orjson.dumps(timeless)]

    poison: list[bytes] = []
    for group, payload in zip(groups, [*poison_payloads, None], strict=True):
        result = ingestor.submit(group)
        assert (result.accepted, result.duplicates, result.rejected) == (len(group), 0, [])
        if payload is not None:
            poison.append(add_raw_entry(runtime, payload))

    tries_seen = run_worker_until_drained(runtime, poison)

    max_tries = runtime.settings.max_tries
    assert max_tries == 5
    dead = dead_letters(runtime.redis, runtime.keys.dead)
    assert sorted(dead) == sorted(poison)
    not_json, no_offset = (dead[entry_id] for entry_id in poison)
    for fields, payload in zip((not_json, no_offset), poison_payloads, strict=True):
        assert int(fields[b"tries"]) == max_tries
        assert orjson.loads(fields[b"fields"]) == {"e": payload.decode()}
    assert b"JSONDecodeError" in not_json[b"error"]
    assert b"has no UTC offset" in no_offset[b"error"]
    assert b"2026-10-06T10:30:00" in no_offset[b"error"]
    # Counted once per try, and moved only at the last one.
    for entry_id in poison:
        assert tries_seen[entry_id] == list(range(1, max_tries)), tries_seen

    stats = pipeline_stats(runtime.redis, runtime.keys)
    assert stats["dead"] == 2
    assert stats["accepted"] == len(valid) + 2
    assert stats["processed"] == len(valid)
    assert backlog(runtime.redis, runtime.keys) == 0
    assert pending_total(runtime.redis, runtime.keys) == 0
    assert runtime.redis.hlen(runtime.keys.failures) == 0
    stored = stored_events(runtime.settings.database_url or "")
    assert set(stored) == {key_of(event) for event in valid}
    assert all(stored[key_of(event)] == event for event in valid)


def test_entry_the_database_refuses_is_dead_lettered(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decodable event PostgreSQL will not store (a NUL in a JSONB string) must not stall the worker."""
    commits: list[int] = []
    commit = IngestWorker._commit

    def counted(worker: IngestWorker, batch: Sequence[StoredEvent]) -> None:
        commits.append(len(batch))
        commit(worker, batch)

    monkeypatch.setattr(IngestWorker, "_commit", counted)
    ingestor = runtime.ingestor()
    before = [numbered_event(n) for n in range(VALID_PER_GROUP)]
    after = [numbered_event(n) for n in range(VALID_PER_GROUP, 2 * VALID_PER_GROUP)]
    refused = numbered_event(20_000, note="a\u0000b")  # an extra field: only the JSONB payload holds it

    assert ingestor.submit(before).accepted == len(before)
    entry_id = add_raw_entry(runtime, orjson.dumps(refused))
    assert ingestor.submit(after).accepted == len(after)

    tries_seen = run_worker_until_drained(runtime, [entry_id])

    dead = dead_letters(runtime.redis, runtime.keys.dead)
    assert list(dead) == [entry_id]
    assert int(dead[entry_id][b"tries"]) == runtime.settings.max_tries
    assert b"unsupported Unicode escape sequence" in dead[entry_id][b"error"]
    assert tries_seen[entry_id] == list(range(1, runtime.settings.max_tries))
    stats = pipeline_stats(runtime.redis, runtime.keys)
    assert (stats["dead"], stats["processed"]) == (1, len(before) + len(after))
    assert pending_total(runtime.redis, runtime.keys) == 0
    stored = stored_events(runtime.settings.database_url or "")
    assert set(stored) == {key_of(event) for event in before + after}
    # The refused batch of 40 is halved down to the bad entry (at most 2 commits
    # for each of 6 levels), not committed entry by entry (40); its later tries
    # come alone, one commit each.
    assert len(commits) <= 3 + 1 + 2 * 6 + (runtime.settings.max_tries - 1), commits
