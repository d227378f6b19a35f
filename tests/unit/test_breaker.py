"""The circuit breaker around the stores: opens after N failures, fails fast, one trial, closes on success.

The timing tests run refreshes on an injected clock: a store that is back
must be read by the first refresh after it returns.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from dashboard.settings import Settings
from dashboard.stream import StoreUnavailable
from datasources.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, StoreBreakers
from datasources.cache import GuardedCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A store that answers or not, counting the calls that reached it; each call takes ``cost_s`` on the clock."""

    def __init__(self, clock: FakeClock | None = None, cost_s: float = 0.0) -> None:
        self.up = True
        self.calls = 0
        self._clock = clock
        self._cost_s = cost_s

    def read(self) -> str:
        self.calls += 1
        if self._clock is not None:
            self._clock.now += self._cost_s
        if not self.up:
            raise StoreUnavailable("Redis: Connection refused")
        return "figures"


def breaker(clock: FakeClock, failures: int = 3, reset_s: float = 5.0, trial_wait_s: float = 0.25) -> CircuitBreaker:
    return CircuitBreaker(
        "Redis",
        failures,
        reset_s,
        clock=clock,
        wall_clock=lambda: datetime(2026, 12, 3, 12, 34, 56, tzinfo=UTC),
        trial_wait_s=trial_wait_s,
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
    guard = breaker(clock, trial_wait_s=0)
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


def trial_under_way(guard: CircuitBreaker, work) -> tuple[threading.Thread, threading.Event, threading.Event]:  # type: ignore[no-untyped-def]
    """Start a trial call of ``work`` in a thread, held until the returned ``release`` is set."""
    entered, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def held() -> str:
        entered.set()
        release.wait(5)
        return work()

    def run() -> None:
        try:
            outcome.append(guard.call(held))
        except StoreUnavailable as error:
            outcome.append(error)

    trial = threading.Thread(target=run)
    trial.start()
    assert entered.wait(5)
    return trial, release, entered


def test_a_call_during_the_trial_waits_for_it_and_reads_a_store_that_is_back():
    clock, store = FakeClock(), Store()
    guard = breaker(clock, trial_wait_s=5)
    store.up = False
    fail(guard, store, 3)
    clock.now += 5
    store.up = True
    trial, release, _ = trial_under_way(guard, store.read)
    threading.Timer(0.1, release.set).start()
    assert guard.call(store.read) == "figures"  # not refused: the trial it waited for closed the breaker
    trial.join(5)
    assert store.calls == 5 and guard.rejected == 0


def test_a_call_during_a_failing_trial_fails_fast_once_it_failed():
    clock, store = FakeClock(), Store()
    guard = breaker(clock, trial_wait_s=5)
    store.up = False
    fail(guard, store, 3)
    clock.now += 5
    trial, release, _ = trial_under_way(guard, store.read)
    threading.Timer(0.1, release.set).start()
    with pytest.raises(StoreUnavailable):
        guard.call(store.read)
    trial.join(5)
    assert store.calls == 4  # only the trial reached the store
    assert guard.state == OPEN


def test_a_call_waits_at_most_trial_wait_s_for_a_trial_that_hangs():
    import time

    clock, store = FakeClock(), Store()
    guard = breaker(clock, trial_wait_s=0.2)
    store.up = False
    fail(guard, store, 3)
    clock.now += 5
    trial, release, _ = trial_under_way(guard, store.read)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        guard.call(store.read)
    waited = time.monotonic() - started
    release.set()
    trial.join(5)
    assert 0.15 <= waited < 1.0, waited


# -- timing: a store that is back shows at the next refresh --------------------------------

# Offsets of each refresh from its nominal time, in intervals: the browser's timer
# fires up to a fifth of an interval early or late (a loaded machine, a slow request).
JITTER = (0.0, 0.2, -0.2, 0.15, -0.2, 0.2, -0.2, 0.1, -0.2, 0.2, -0.2, 0.0)
READS_PER_REFRESH = 4  # a refresh reads the store several times (cache, figures, pipeline...)
DOWN_AT, BACK_AT = 1.5, 7.5  # in intervals: down after the second refresh, back before the ninth
FAILING_READ_S = 0.3  # a refused connection with redis-py's two retries (0.1 s and 0.2 s of backoff)


def run_outage(refresh_s: float, reset_s: float) -> tuple[list[int], list[bool], list[float]]:
    """Refresh every ``refresh_s`` (with JITTER) through an outage from DOWN_AT to BACK_AT intervals.

    Return, per refresh, the reads that reached the store, whether all its reads
    answered, and when it ran.
    """
    clock = FakeClock()
    clock.now = 0.0
    store = Store(clock, cost_s=FAILING_READ_S)
    guard = breaker(clock, failures=3, reset_s=reset_s, trial_wait_s=0)
    reached, answered, moments = [], [], []
    for index, offset in enumerate(JITTER):
        clock.now = (index + offset) * refresh_s
        moments.append(clock.now)
        store.up = not (DOWN_AT * refresh_s <= clock.now < BACK_AT * refresh_s)
        before, ok = store.calls, True
        for _ in range(READS_PER_REFRESH):
            try:
                guard.call(store.read)
            except StoreUnavailable:
                ok = False
        reached.append(store.calls - before)
        answered.append(ok)
    return reached, answered, moments


@pytest.mark.parametrize("refresh_s", [1.0, 2.0, 5.0])
def test_with_the_settings_every_refresh_tries_the_store_and_the_first_after_it_is_back_reads_it(refresh_s):
    reset_s = Settings(refresh_s=refresh_s).breaker_reset_s
    reached, answered, moments = run_outage(refresh_s, reset_s)
    down = [i for i, moment in enumerate(moments) if DOWN_AT * refresh_s <= moment < BACK_AT * refresh_s]
    assert down == list(range(2, 8))
    # The first refresh of the outage opens the breaker (three failures); every later one tries the store once.
    assert [reached[i] for i in down] == [3, 1, 1, 1, 1, 1], reached
    assert [answered[i] for i in down] == [False] * len(down)
    # The first refresh after the store is back reads it: recovery within one refresh interval.
    first_after = down[-1] + 1
    assert answered[first_after:] == [True] * (len(JITTER) - first_after), answered
    assert moments[first_after] - BACK_AT * refresh_s <= refresh_s


def test_a_cool_down_of_a_whole_refresh_misses_refreshes():
    # Why BREAKER_RESET_S is at most half of REFRESH_S: with a whole interval, a refresh whose
    # timer fires early finds the breaker still cooling down, and a store that is back waits a refresh more.
    reached, answered, _ = run_outage(1.0, 1.0)
    assert 0 in reached[3:8], reached


def test_settings_keep_the_cool_down_within_half_a_refresh():
    assert Settings().breaker_reset_s == 0.5
    assert Settings(refresh_s=0.4).breaker_reset_s == 0.2  # the default follows a short refresh
    assert Settings(refresh_s=5, breaker_reset_s=2.0).breaker_reset_s == 2.0
    with pytest.raises(ValueError, match="at most half of refresh_s"):
        Settings(refresh_s=1.0, breaker_reset_s=1.0)


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
    with pytest.raises(ValueError):
        CircuitBreaker("x", trial_wait_s=-1)
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
