"""The circuit breaker around the stores: opens after N failures, fails fast, one trial, closes on success."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from dashboard.stream import StoreUnavailable
from datasources.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, StoreBreakers
from datasources.cache import GuardedCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A store that answers or not, counting the calls that reached it."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    def read(self) -> str:
        self.calls += 1
        if not self.up:
            raise StoreUnavailable("Redis: Connection refused")
        return "figures"


def breaker(clock: FakeClock, failures: int = 3, reset_s: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker(
        "Redis", failures, reset_s, clock=clock, wall_clock=lambda: datetime(2026, 12, 3, 12, 34, 56, tzinfo=UTC)
    )


def fail(guard: CircuitBreaker, store: Store, times: int) -> None:
    for _ in range(times):
        with pytest.raises(StoreUnavailable):
            guard.call(store.read)


def test_it_opens_after_n_consecutive_failures_and_then_fails_fast():
    clock, store = FakeClock(), Store()
    guard = breaker(clock)
    store.up = False
    fail(guard, store, 2)
    assert guard.state == CLOSED
    fail(guard, store, 1)
    assert guard.state == OPEN
    assert store.calls == 3
    with pytest.raises(StoreUnavailable, match=r"Redis: unreachable since 12:34:56 UTC \(Redis: Connection refused\)"):
        guard.call(store.read)
    fail(guard, store, 10)
    assert store.calls == 3  # nothing reached the store while open
    assert guard.rejected == 11
    assert guard.down_since == datetime(2026, 12, 3, 12, 34, 56, tzinfo=UTC)


def test_a_success_resets_the_count_of_failures():
    clock, store = FakeClock(), Store()
    guard = breaker(clock)
    store.up = False
    fail(guard, store, 2)
    store.up = True
    assert guard.call(store.read) == "figures"
    store.up = False
    fail(guard, store, 2)
    assert guard.state == CLOSED


def test_after_the_cool_down_one_trial_call_goes_through_and_a_failure_reopens():
    clock, store = FakeClock(), Store()
    guard = breaker(clock)
    store.up = False
    fail(guard, store, 3)
    clock.now += 4.9
    fail(guard, store, 1)
    assert store.calls == 3
    clock.now += 0.1
    assert guard.state == HALF_OPEN
    fail(guard, store, 1)  # the trial: reaches the store, fails
    assert store.calls == 4
    assert guard.state == OPEN
    fail(guard, store, 1)  # open again for a whole cool-down
    assert store.calls == 4


def test_a_successful_trial_closes_it():
    clock, store = FakeClock(), Store()
    guard = breaker(clock)
    store.up = False
    fail(guard, store, 3)
    clock.now += 5
    store.up = True
    assert guard.call(store.read) == "figures"
    assert guard.state == CLOSED
    assert guard.down_since is None
    assert guard.call(store.read) == "figures"
    assert store.calls == 5


def test_only_one_trial_at_a_time():
    clock, store = FakeClock(), Store()
    guard = breaker(clock)
    store.up = False
    fail(guard, store, 3)
    clock.now += 5
    store.up = True
    entered, release = threading.Event(), threading.Event()

    def slow_read() -> str:
        entered.set()
        release.wait(5)
        return store.read()

    trial = threading.Thread(target=lambda: guard.call(slow_read))
    trial.start()
    assert entered.wait(5)
    with pytest.raises(StoreUnavailable):
        guard.call(store.read)  # another caller during the trial fails fast
    release.set()
    trial.join(5)
    assert guard.state == CLOSED


def test_other_errors_are_answers_not_failures():
    clock = FakeClock()
    guard = breaker(clock, failures=1)

    def broken() -> None:
        raise KeyError("not the store's fault")

    with pytest.raises(KeyError):
        guard.call(broken)
    assert guard.state == CLOSED


def test_settings_are_checked():
    with pytest.raises(ValueError):
        CircuitBreaker("x", failures=0)
    breakers = StoreBreakers.create(2, 0.5)
    assert (breakers.redis.name, breakers.database.name) == ("Redis", "database")


def test_the_guarded_cache_falls_back_to_memory_while_redis_is_down():
    import redis

    class DeadCache:
        def get(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise redis.ConnectionError("refused")

        set = add = get

    clock = FakeClock()
    guard = breaker(clock, failures=2)
    cache = GuardedCache(DeadCache(), guard)
    assert cache.get("k") is None
    assert cache.add("k", 1, timeout=5)
    assert not cache.add("k", 2, timeout=5)
    cache.set("box", {"value": 3}, timeout=5)
    assert cache.get("box") == {"value": 3}
    assert guard.state == OPEN
