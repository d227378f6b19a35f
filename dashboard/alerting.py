"""The alert evaluator: one process at a time evaluates the rules, under a Redis lease.

Every ingest worker process (and the embedded demo) runs an evaluator thread;
each cycle it tries to take or extend the lease (``SET NX PX`` with its own
token, extended only by its holder). The holder gathers a snapshot, lets
``dashboard.alerts.plan`` decide, and writes the plan in one database
transaction. If the holder dies, its lease runs out and another takes over;
the condition episodes live in the database, so their timing carries over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from sqlalchemy import exc as sa_exc

from dashboard.alerts import Plan, Policies, PolicyError, Snapshot, load_policies, plan
from dashboard.runtime import Runtime
from dashboard.stream import Keys, StoreUnavailable
from dashboard.telemetry import ALERT_EVALUATION_SECONDS, STORE_ERRORS, store_of
from datasources.alerts import apply_plan, load_lifecycle
from datasources.history import SiteStateReader
from datasources.live import LiveSource

log = logging.getLogger(__name__)

DEFAULT_POLICIES = Path(__file__).with_name("alert_policies.toml")
LIVE_WINDOW = timedelta(hours=1)
_DB_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.ProgrammingError)


def lease_key(keys: Keys) -> str:
    """Return the key of the evaluator's lease."""
    return f"{keys.prefix}:alerting:lease"


def evaluations_key(keys: Keys) -> str:
    """Return the hash counting evaluations per evaluator (owner token -> count)."""
    return f"{keys.prefix}:alerting:evaluations"


# -- policies from a file -------------------------------------------------------------------


class PolicyFile:
    """The policies of a TOML file, read again whenever the file's mtime (or size) changes.

    A file that cannot be read or holds a mistake is refused with an error
    log naming the problem; the last good policies stay in force (the shipped
    defaults, if it was never good). Rules a custom file leaves out keep the
    shipped defaults.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else DEFAULT_POLICIES
        self.defaults = load_policies(DEFAULT_POLICIES.read_text())
        self._policies = self.defaults
        self._stamp: tuple[int, int] | None = None
        self.error: str | None = None
        self.current()

    def current(self) -> Policies:
        """Return the policies in force, reloading the file first if it changed."""
        try:
            status = os.stat(self.path)
            stamp = (status.st_mtime_ns, status.st_size)
        except OSError as error:
            self._refuse((-1, -1), f"cannot read the file: {error.strerror}")
            return self._policies
        if stamp == self._stamp:
            return self._policies
        try:
            text = self.path.read_text(encoding="utf-8")
            base = None if self.path.resolve() == DEFAULT_POLICIES.resolve() else self.defaults
            policies = load_policies(text, base)
        except (OSError, UnicodeDecodeError) as error:
            self._refuse(stamp, f"cannot read the file: {error}")
            return self._policies
        except PolicyError as error:
            self._refuse(stamp, str(error))
            return self._policies
        self._stamp, self._policies, self.error = stamp, policies, None
        log.info(
            "alert_policies_loaded",
            extra={"path": str(self.path), "site_overrides": sorted(policies.sites)},
        )
        return policies

    def _refuse(self, stamp: tuple[int, int], error: str) -> None:
        if stamp != self._stamp:  # say it once per version of the file
            log.error(
                "alert_policies_refused",
                extra={"path": str(self.path), "error": error, "using": "the last good policies"},
            )
        self._stamp, self.error = stamp, error


# -- the lease ------------------------------------------------------------------------------

# KEYS: lease. ARGV: owner token, ttl ms. Take the lease if free, extend it if ours; 1 when held.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# KEYS: lease. ARGV: owner token. Give the lease up only if ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """A Redis lease held by one owner token at a time, for ``ttl_ms`` unless extended."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float, owner: str | None = None) -> None:
        self.key = key
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take the lease, or extend it if this owner holds it; return whether it is held."""
        return bool(self._hold(keys=[self.key], args=[self.owner, self._ttl_ms]))

    def release(self) -> None:
        """Give the lease up if this owner holds it, so another can take over at once."""
        self._release(keys=[self.key], args=[self.owner])


# -- the evaluator --------------------------------------------------------------------------


class AlertEvaluator:
    """Evaluate the alert rules every ``interval_s`` while holding the lease."""

    def __init__(
        self,
        runtime: Runtime,
        policies: PolicyFile | None = None,
        *,
        interval_s: float | None = None,
        lease_ttl_s: float | None = None,
        owner: str | None = None,
    ) -> None:
        settings = runtime.settings
        self._runtime = runtime
        self.interval_s = interval_s or settings.alert_interval_s
        self.policies = policies or PolicyFile(settings.alert_policies)
        self.lease = Lease(runtime.redis, lease_key(runtime.keys), lease_ttl_s or max(3 * self.interval_s, 5.0), owner)
        self._state = SiteStateReader(runtime.engine, settings.stuck_minutes)
        self._live = LiveSource(runtime.redis, runtime.keys, settings.live_retention_s)
        self.evaluations = 0

    @property
    def owner(self) -> str:
        return self.lease.owner

    def run(self, stop: threading.Event) -> None:
        """Evaluate while holding the lease, until ``stop`` is set; survive store outages."""
        log.info("alert_evaluator_started", extra={"owner": self.owner, "interval_s": self.interval_s})
        leading = False
        while not stop.is_set():
            started = time.monotonic()
            try:
                held = self.lease.hold()
                if held != leading:
                    leading = held
                    log.info("alert_evaluator_lease", extra={"owner": self.owner, "held": held})
                if held:
                    self.evaluate()
            except (redis.ConnectionError, redis.TimeoutError, StoreUnavailable, *_DB_DOWN) as error:
                store = "redis" if isinstance(error, redis.RedisError) else store_of(error)
                STORE_ERRORS.labels(store=store).inc()
                log.warning(
                    "alert_evaluation_skipped",
                    extra={"owner": self.owner, "store": store, "error": str(error).splitlines()[0]},
                )
            except sa_exc.IntegrityError as error:
                # Two evaluators overlapped (a lease ran out mid-cycle): the unique index kept one alert.
                log.warning("alert_evaluation_overlap", extra={"owner": self.owner, "error": str(error.orig)[:200]})
            except Exception:
                log.exception("alert_evaluation_failed", extra={"owner": self.owner})
            stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        with contextlib.suppress(redis.RedisError):  # else it runs out on its own
            self.lease.release()
        log.info("alert_evaluator_stopped", extra={"owner": self.owner, "evaluations": self.evaluations})

    def snapshot(self, now: datetime) -> Snapshot:
        """Gather what the rules look at, as of ``now``."""
        site_ids = self._state.site_ids()
        sites = {site_id: state for site_id in site_ids if (state := self._state.state(site_id, now)) is not None}
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        live = {site_id: self._live.metrics(site_id, end - LIVE_WINDOW, end, now) for site_id in site_ids}
        pipeline = self._live.pipeline().as_dict()
        try:
            pipeline["dead_letters_waiting"] = int(self._runtime.redis.xlen(self._runtime.keys.dead))
        except redis.RedisError as error:
            raise StoreUnavailable(f"Redis: {error}") from error
        return Snapshot(now, sites, live, pipeline, self._runtime.settings.stuck_minutes)

    def evaluate(self, now: datetime | None = None) -> Plan:
        """Run one evaluation (without the lease: ``run`` takes care of that); return its plan."""
        started = time.perf_counter()
        now = (now or datetime.now(UTC)).astimezone(UTC)
        policies = self.policies.current()
        snapshot = self.snapshot(now)
        with self._runtime.engine.begin() as connection:
            episodes, open_alerts = load_lifecycle(connection)
            result = plan(snapshot, policies, episodes, open_alerts)
            opened = apply_plan(connection, result, episodes)
        for alert_id, condition in zip(opened, result.open, strict=True):
            log.info(
                "alert_opened",
                extra={
                    "alert_id": alert_id,
                    "rule": condition.rule,
                    "site_id": condition.site_id,
                    "severity": condition.severity,
                    "alert_message": condition.message,
                    "suggestion": condition.suggestion,
                },
            )
        keys_by_id = {alert.id: key for key, alert in open_alerts.items()}
        for alert_id in result.resolve:
            rule, site_id = keys_by_id[alert_id]
            log.info(
                "alert_resolved",
                extra={"alert_id": alert_id, "rule": rule, "site_id": site_id, "by": "auto"},
            )
        self.evaluations += 1
        self._runtime.redis.hincrby(evaluations_key(self._runtime.keys), self.owner, 1)
        ALERT_EVALUATION_SECONDS.observe(time.perf_counter() - started)
        return result


def count_evaluations(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Return how many evaluations each evaluator (by owner token) has run."""
    return {owner.decode(): int(count) for owner, count in client.hgetall(evaluations_key(keys)).items()}


def start_alert_evaluator(runtime: Runtime, stop: threading.Event) -> threading.Thread:
    """Run an alert evaluator in a daemon thread of this process."""
    evaluator = AlertEvaluator(runtime)
    thread = threading.Thread(target=evaluator.run, args=(stop,), name="alert-evaluator", daemon=True)
    thread.start()
    return thread
