"""Plain helpers of the fault tests: deadlines, ports, events, store reads."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import redis

from dashboard.stream import GROUP, Keys
from tests.helpers import make_event

T = TypeVar("T")
TAIL_LINES = 40

Key = tuple[str, str]


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """Return the last lines of a log file, or why there are none."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(unreadable: {error})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Return the first truthy value of ``predicate``; fail after ``timeout_s``.

    Errors from the predicate (a store still starting) are retried until the
    deadline; an AssertionError fails at once.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except AssertionError:
            raise
        except Exception as error:
            last_error = error
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{detail}")
        time.sleep(interval_s)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def numbered_event(number: int, source: str = "/sites/SEA1/wms", **data: Any) -> dict[str, Any]:
    """Return a valid order.picked event whose id carries ``number``."""
    return make_event(
        "order.picked",
        event_id=f"evt-{number:07d}",
        source=source,
        time=f"2026-10-06T10:{number // 60 % 60:02d}:{number % 60:02d}Z",
        order_id=f"O{number}",
        **data,
    )


def key_of(event: dict[str, Any]) -> Key:
    """Return the idempotency key (source, id) of an event."""
    return event["source"], event["id"]


def stored_events(database_url: str) -> dict[Key, dict[str, Any]]:
    """Return the history table as {(source, id): payload}."""
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        rows = connection.execute("SELECT source, id, payload FROM events").fetchall()
    return {(source, event_id): payload for source, event_id, payload in rows}


def count_rows(database_url: str) -> int:
    """Return the number of rows in the history table."""
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        row = connection.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


def pipeline_stats(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Return the pipeline counters of the stats hash, missing ones as 0."""
    names = ("accepted", "duplicates", "rejected", "processed", "dead")
    values = client.hmget(keys.stats, names)
    return {name: int(value or 0) for name, value in zip(names, values, strict=True)}


def pending_total(client: redis.Redis, keys: Keys) -> int:
    """Return how many entries of the stream the ingest group has not acknowledged."""
    return int(client.xpending(keys.stream, GROUP)["pending"])


def pending_of_process(client: redis.Redis, keys: Keys, pid: int) -> int:
    """Return the entries pending for the consumer of the worker process ``pid``."""
    # Consumer names are HOST-PID-HEX (dashboard.worker.consumer_name).
    summary = client.xpending(keys.stream, GROUP)
    return sum(
        int(consumer["pending"])
        for consumer in summary.get("consumers") or ()
        if f"-{pid}-" in consumer["name"].decode()
    )
