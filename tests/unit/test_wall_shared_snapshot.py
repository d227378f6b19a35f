"""SharedSnapshot: one computation per tick, and refreshes that never queue behind the tick's computation."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from dashboard.wallboard import SharedSnapshot


class DictCache:
    """The three calls of flask-caching that SharedSnapshot makes, in a dict (no expiry)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def add(self, key: str, value: Any, timeout: int) -> bool:
        return self.values.setdefault(key, value) is value

    def set(self, key: str, value: Any, timeout: int) -> None:
        self.values[key] = value


class Computation:
    """A computation that counts its calls; while ``hold`` is set it blocks (a slow tick)."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = threading.Event()
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, now: datetime) -> dict[str, Any]:
        self.calls += 1
        self.started.set()
        if self.hold.is_set():
            assert self.release.wait(5)
        return {"call": self.calls}


def test_one_computation_per_tick_and_a_new_one_the_next_tick() -> None:
    compute = Computation()
    shared = SharedSnapshot(DictCache(), "t", 1.0, compute)  # type: ignore[arg-type]
    assert [shared.get(100.2)["call"] for _ in range(5)] == [1] * 5
    assert shared.get(100.9, wait=False) == {"call": 1}
    assert shared.get(101.0) == {"call": 2}
    assert shared.computations == 2


def test_another_process_value_is_read_from_the_cache_not_computed() -> None:
    cache = DictCache()
    first = SharedSnapshot(cache, "t", 1.0, Computation())  # type: ignore[arg-type]
    second_compute = Computation()
    second = SharedSnapshot(cache, "t", 1.0, second_compute)  # type: ignore[arg-type]
    value = first.get(100.5)
    assert second.get(100.6) == value and second_compute.calls == 0


def test_while_the_tick_is_computed_a_refresh_gets_the_previous_tick() -> None:
    compute = Computation()
    shared = SharedSnapshot(DictCache(), "t", 1.0, compute)  # type: ignore[arg-type]
    previous = shared.get(100.5)
    compute.hold.set()
    answers: list[dict[str, Any]] = []
    computing = threading.Thread(target=lambda: answers.append(shared.get(101.01)))
    computing.start()
    assert compute.started.wait(5)
    compute.started.clear()
    try:
        assert shared.get(101.02, wait=False) is previous  # at once, a tick old
        waiting = threading.Thread(target=lambda: answers.append(shared.get(101.03)))
        waiting.start()
        waiting.join(0.2)
        assert waiting.is_alive()  # wait=True (the default) queues for the new tick
    finally:
        compute.release.set()
    computing.join(5)
    waiting.join(5)
    assert answers == [{"call": 2}, {"call": 2}]
    assert shared.get(101.5, wait=False) == {"call": 2}
    assert compute.calls == 2


def test_a_value_older_than_the_previous_tick_is_never_served() -> None:
    compute = Computation()
    shared = SharedSnapshot(DictCache(), "t", 1.0, compute)  # type: ignore[arg-type]
    shared.get(100.5)
    assert shared.get(105.5, wait=False) == {"call": 2}  # no stale shortcut: it computes
