"""Circuit breakers around the stores: after repeated failures, calls fail fast for a cool-down.

A breaker is closed while its store answers. ``failures`` consecutive
failures (a ``StoreUnavailable`` from the wrapped call) open it: every call
then raises ``StoreUnavailable`` at once, without touching the store, until
``reset_s`` have passed since the failing call began. The first call after
that is the one trial (half-open); its success closes the breaker, its
failure opens it again for another cool-down. Calls made while the trial
runs wait for its outcome, at most ``trial_wait_s`` (real time): they go on
to the store if it answered, and fail fast if it did not or is still trying.
So two callbacks of one refresh never see a store that is back as down just
because the other one was trying it.

How soon a store that is back shows: a page's refresh reads the store, so
the breaker must let a trial through at every refresh. ``Settings`` keeps
``reset_s`` (``BREAKER_RESET_S``) at most half of ``REFRESH_S``: when the
next refresh comes, the previous one's failed trial is always a whole
cool-down old, even when the browser's timer fires a little early, and the
first refresh after the store comes back reads it.

One breaker per store is shared by every data source of an app
(``dashboard.webapp.build_sources``), so a dead Redis costs one refused
connection per cool-down, not one per tile per screen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from dashboard.stream import StoreUnavailable

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "PassThrough", "StoreBreakers", "StoreUnavailable"]

log = logging.getLogger(__name__)
T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
# How long a call waits for a trial under way: a store that answers does so in
# milliseconds; one that hangs must not hold a refresh much longer.
TRIAL_WAIT_S = 0.25


class CircuitBreaker:
    """Fail fast while a store is known to be down; let one trial call through per cool-down."""

    def __init__(
        self,
        name: str,
        failures: int = 3,
        reset_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        trial_wait_s: float = TRIAL_WAIT_S,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        if reset_s < 0:
            raise ValueError("reset_s must not be negative")
        if trial_wait_s < 0:
            raise ValueError("trial_wait_s must not be negative")
        self.name = name
        self._threshold = failures
        self._reset_s = reset_s
        self._trial_wait_s = trial_wait_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._trial_done = threading.Condition(self._lock)
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        self._last_error = ""
        self._down_since: datetime | None = None
        self.rejected = 0  # calls refused without touching the store

    @property
    def state(self) -> str:
        """Return "closed", "open" or "half-open" (a cooled-down open breaker reads as half-open)."""
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self._reset_s:
                return HALF_OPEN
            return self._state

    @property
    def down_since(self) -> datetime | None:
        """Return when the current run of failures began (None while the store answers)."""
        with self._lock:
            return self._down_since

    def call(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``work``; a StoreUnavailable it raises counts as a failure, anything else as an answer."""
        self._admit()
        started = self._clock()
        try:
            result = work(*args, **kwargs)
        except StoreUnavailable as error:
            self._failed(error, started)
            raise
        except BaseException:
            self._answered()  # the store answered; the caller's problem is not the store's
            raise
        self._answered()
        return result

    def _admit(self) -> None:
        with self._lock:
            if self._trial_running and self._trial_wait_s > 0:
                # A trial is under way: its outcome is worth a short wait (the store may be back).
                self._trial_done.wait_for(lambda: not self._trial_running, timeout=self._trial_wait_s)
            if self._state == CLOSED:
                return
            if self._state == OPEN and not self._trial_running and self._clock() - self._opened_at >= self._reset_s:
                self._state = HALF_OPEN
                self._trial_running = True
                return
            self.rejected += 1
            since = self._down_since.strftime("%H:%M:%S UTC") if self._down_since else "?"
            raise StoreUnavailable(f"{self.name}: unreachable since {since} ({self._last_error})")

    def _failed(self, error: StoreUnavailable, started: float) -> None:
        with self._lock:
            self._last_error = str(error)
            if self._down_since is None:
                self._down_since = self._wall_clock()
            self._failures += 1
            trial = self._state == HALF_OPEN
            self._trial_running = False
            if trial or self._failures >= self._threshold:
                if self._state == CLOSED:
                    log.warning(
                        "circuit_opened", extra={"store": self.name, "failures": self._failures, "error": str(error)}
                    )
                self._state = OPEN
                # The cool-down runs from when the failed call began: a trial every reset_s,
                # however long a refused connection (and the client's retries) took to fail.
                self._opened_at = started
            self._trial_done.notify_all()

    def _answered(self) -> None:
        with self._lock:
            if self._state != CLOSED:
                log.info("circuit_closed", extra={"store": self.name, "down_since": str(self._down_since)})
            self._state = CLOSED
            self._failures = 0
            self._trial_running = False
            self._down_since = None
            self._trial_done.notify_all()


class PassThrough:
    """A breaker that never opens: sources built without one behave as before."""

    name = "none"
    state = CLOSED
    down_since = None

    def call(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``work`` as it is."""
        return work(*args, **kwargs)


PASS_THROUGH = PassThrough()


@dataclass(frozen=True)
class StoreBreakers:
    """One breaker per store, shared by the data sources of one app."""

    redis: CircuitBreaker
    database: CircuitBreaker

    @classmethod
    def create(cls, failures: int = 3, reset_s: float = 0.5) -> StoreBreakers:
        """Return a closed breaker for Redis and one for the database."""
        return cls(CircuitBreaker("Redis", failures, reset_s), CircuitBreaker("database", failures, reset_s))
