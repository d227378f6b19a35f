"""Ingest benchmark: events/s through the API, through to PostgreSQL, and the lag between.

Run on demand, not in CI (see bench/README.md)::

    .venv/bin/python bench/ingest.py                       # 200,000 events, 1 and 2 workers
    .venv/bin/python bench/ingest.py --events 50000 --workers 2 --scenario e2e

For each worker count and scenario it builds a fresh database and a fresh
Redis key prefix, starts ``python app.py serve`` and ``python app.py ingest``
as real subprocesses, posts pre-serialized batches with concurrent keep-alive
clients, and measures:

- e2e: API and workers running together: accepted events/s at the API, events/s
  through to PostgreSQL, acceptance-to-commit lag, peak RSS, CPU by component;
- split: the building blocks apart: the API alone (no worker running, the
  stream fills up), then the workers alone draining that preloaded stream.

The table goes to stdout, the figures to bench/out/ingest.json. Every
subprocess is stopped on exit, Ctrl-C included, and every wait has a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

from dashboard.events import validate  # noqa: E402
from dashboard.settings import Settings  # noqa: E402
from dashboard.stream import GROUP, Keys, ensure_group  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
MONITOR_INTERVAL_S = 0.01

# ---------------------------------------------------------------------------
# Events: a day of operations, generated before any timing starts.
# ---------------------------------------------------------------------------

# Coherent stories, so that pairs (dock wait, driver idle, ready-to-truck) and
# shifts really form: each route is a truck at a door, loaded with its orders,
# then a driver's stops; each order is created, picked, packed, loaded and
# attempted. Staff start and end shifts. Events arrive roughly in event-time
# order, a few seconds late, and some hours late.
SITES = ("SEA1", "SEA2", "PDX1", "SFO1", "LAX2", "DEN1", "CHI1", "NYC3", "BOS1", "ATL1")
FAILURES = ("customer_absent", "access_denied", "address_not_found", "damaged", "refused", "weather", "other")
STAFF_PER_SITE = 60
LATE_SHARE = 0.03  # events that reach us minutes to hours after the fact
HOUR = 3600.0


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _slot(epoch: float) -> tuple[str, str]:
    """Return a two-hour promise window starting on the hour at or before ``epoch``."""
    start = epoch - epoch % HOUR
    return _rfc3339(start), _rfc3339(start + 2 * HOUR)


class DayOfOperations:
    """Generate the events of a network's day, as (event time, type, source, site, data)."""

    def __init__(self, seed: int, now: float) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.base = now - 14 * HOUR  # every story ends before now
        self.stories: list[tuple[float, str, str, str, dict[str, Any]]] = []
        self.routes = 0
        self.orders = 0

    def emit(self, moment: float, event_type: str, source: str, site: str, data: dict[str, Any]) -> None:
        self.stories.append((min(moment, self.now - 60), event_type, source, site, {"site_id": site, **data}))

    def staff(self) -> None:
        rng = self.rng
        for site in SITES:
            hr = f"/sites/{site}/hr"
            for n in range(STAFF_PER_SITE):
                worker = f"W-{site}-{n:03d}"
                role = ("picker", "packer", "loader", "driver")[n % 4]
                if rng.random() < 0.03:
                    self.emit(
                        self.base + rng.uniform(0, HOUR), "worker.absent", hr, site, {"worker_id": worker, "role": role}
                    )
                    continue
                start = self.base + rng.uniform(0, 3 * HOUR)
                cost = round(rng.uniform(18, 34), 2)
                self.emit(
                    start, "worker.shift_started", hr, site, {"worker_id": worker, "role": role, "hourly_cost": cost}
                )
                if rng.random() < 0.6:
                    self.emit(start + rng.uniform(6, 9) * HOUR, "worker.shift_ended", hr, site, {"worker_id": worker})

    def route(self) -> None:
        """One truck at a door, its orders, and its driver's stops."""
        rng = self.rng
        self.routes += 1
        site = rng.choice(SITES)
        route, driver, dock = f"R-{site}-{self.routes:05d}", f"DRV-{self.routes:05d}", f"D{rng.randrange(1, 25):02d}"
        wms, yard, app = f"/sites/{site}/wms", f"/sites/{site}/yard", f"/drivers/{driver}/app"
        arrived = self.base + 3 * HOUR + rng.uniform(0, 4 * HOUR)
        loading = arrived + rng.uniform(60, 1800)
        departed = loading + rng.uniform(900, 2400)
        self.emit(arrived, "truck.arrived", yard, site, {"route_id": route, "dock_id": dock})
        self.emit(loading, "truck.loading_started", yard, site, {"route_id": route, "dock_id": dock})
        self.emit(departed, "truck.departed", yard, site, {"route_id": route, "dock_id": dock, "driver_id": driver})
        if rng.random() < 0.02:
            self.emit(arrived - 600, "dock.status_changed", yard, site, {"dock_id": dock, "status": "open"})
        previous_departure = departed
        for stop in range(1, rng.randint(10, 25) + 1):
            self.orders += 1
            order = f"O-{site}-{self.orders:07d}"
            staff = rng.sample(range(STAFF_PER_SITE), 2)
            picker, packer = f"W-{site}-{staff[0]:03d}", f"W-{site}-{staff[1]:03d}"
            drive = rng.uniform(300, 1200)
            planned = previous_departure + drive
            created = arrived - rng.uniform(2, 10) * HOUR
            promised_start, promised_end = _slot(planned - rng.uniform(0, 1.5) * HOUR)
            priority = "express" if rng.random() < 0.1 else "standard"
            self.emit(
                created,
                "order.created",
                wms,
                site,
                {
                    "order_id": order,
                    "promised_start": promised_start,
                    "promised_end": promised_end,
                    "priority": priority,
                },
            )
            if rng.random() < 0.05:
                promised_start, promised_end = _slot(planned - rng.uniform(0, 1) * HOUR)
                self.emit(
                    created + rng.uniform(600, 3600),
                    "slot.changed",
                    wms,
                    site,
                    {"order_id": order, "promised_start": promised_start, "promised_end": promised_end},
                )
            if rng.random() < 0.01:
                self.emit(
                    created + rng.uniform(600, 3600),
                    "order.canceled",
                    wms,
                    site,
                    {"order_id": order, "reason": "customer request"},
                )
                continue
            picked = arrived - rng.uniform(0.7, 2) * HOUR
            packed = picked + rng.uniform(300, 1800)
            self.emit(picked, "order.picked", wms, site, {"order_id": order, "worker_id": picker})
            self.emit(packed, "order.packed", wms, site, {"order_id": order, "worker_id": packer})
            self.emit(
                loading + rng.uniform(0, departed - loading),
                "order.loaded",
                yard,
                site,
                {"order_id": order, "route_id": route, "dock_id": dock},
            )
            stop_arrived = previous_departure + drive * rng.uniform(0.9, 1.4)
            self.emit(
                stop_arrived,
                "stop.arrived",
                app,
                site,
                {"route_id": route, "driver_id": driver, "stop_seq": stop, "planned_drive_s": round(drive, 1)},
            )
            if rng.random() < 0.05:
                self.emit(
                    stop_arrived - 120,
                    "driver.delayed",
                    app,
                    site,
                    {"route_id": route, "driver_id": driver, "delay_s": rng.randrange(120, 1800), "reason": "traffic"},
                )
            attempted = stop_arrived + rng.uniform(60, 300)
            delivered = rng.random() < 0.92
            self.emit(
                attempted,
                "delivery.attempted",
                app,
                site,
                {
                    "order_id": order,
                    "route_id": route,
                    "driver_id": driver,
                    "stop_seq": stop,
                    "attempt": 1 if rng.random() < 0.95 else 2,
                    "outcome": "delivered" if delivered else "failed",
                    "failure_reason": None if delivered else rng.choice(FAILURES),
                    "promised_start": promised_start,
                    "promised_end": promised_end,
                },
            )
            previous_departure = attempted + rng.uniform(30, 120)
            self.emit(
                previous_departure,
                "stop.departed",
                app,
                site,
                {"route_id": route, "driver_id": driver, "stop_seq": stop},
            )
        if rng.random() < 0.001:
            self.emit(
                arrived,
                "mode.changed",
                "/ops/console",
                "*",
                {"mode": "pause_reslotting", "enabled": True, "actor": "ops", "reason": "WMS slow"},
            )


def generate_events(count: int, duplicate_share: float, seed: int) -> tuple[list[dict[str, Any]], int]:
    """Return ``count`` events in arrival order (re-sent duplicates among them) and how many are unique."""
    day = DayOfOperations(seed, time.time())
    rng = day.rng
    duplicates = round(count * duplicate_share)
    unique = count - duplicates
    day.staff()
    while len(day.stories) < unique:
        day.route()
    stories = day.stories[:unique]
    # Arrival order: event time plus a few seconds, or minutes to hours for the late ones.
    arrival = [
        moment + (rng.uniform(300, 4 * HOUR) if rng.random() < LATE_SHARE else rng.uniform(0, 5))
        for moment, *_ in stories
    ]
    # At-least-once producers re-send: copies of earlier events, a little later.
    copies = [rng.randrange(unique) for _ in range(duplicates)]
    order = sorted(
        range(unique + duplicates),
        key=lambda i: arrival[i] if i < unique else arrival[copies[i - unique]] + rng.uniform(1, 600),
    )
    events = [
        {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "source": source,
            "type": event_type,
            "time": _rfc3339(moment),
            "datacontenttype": "application/json",
            "data": data,
        }
        for moment, event_type, source, _site, data in stories
    ]
    return [events[i] if i < unique else events[copies[i - unique]] for i in order], unique


def check_events(events: list[dict[str, Any]], sample: int = 2000) -> None:
    """Validate a sample with the product's own validation; raise on the first failure."""
    now = datetime.now(UTC)
    for event in random.Random(1).sample(events, min(sample, len(events))):
        validate(event, now)


# ---------------------------------------------------------------------------
# Subprocesses, stores, machine facts.
# ---------------------------------------------------------------------------


class Processes:
    """Every subprocess the benchmark starts, each in its own session, stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()  # the child has its own descriptor
        self.running.append((name, process))
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
        """Stop one process and its children: SIGTERM, then SIGKILL after ``timeout_s``."""
        children: list[psutil.Process] = []
        if process.poll() is None:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(process.pid).children(recursive=True)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # its own session: only what we started
                process.wait(5)
        for child in children:  # gunicorn workers outliving their master, say
            with contextlib.suppress(psutil.Error):
                child.kill()
        self.running = [(n, p) for n, p in self.running if p is not process]

    def stop_all(self) -> None:
        """Stop every process still running, last started first."""
        for _, process in reversed(list(self.running)):
            self.stop(process)


def run_command(args: list[str], env: dict[str, str], timeout_s: float = 60.0) -> str:
    """Run a short command to completion; return its stdout or raise with its output."""
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return done.stdout.decode()


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create the benchmark database; return its URL."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def count_rows(database_url: str) -> int:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        row = connection.execute("SELECT count(*) FROM events").fetchone()
    return int(row[0]) if row else 0


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under the run's prefix; return how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def machine_facts(redis_url: str, admin_url: str) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(admin_url, connect_timeout=5) as connection:
        row = connection.execute("SHOW server_version").fetchone()
        settings = dict(
            connection.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('synchronous_commit', 'shared_buffers', 'wal_level', 'fsync')"
            ).fetchall()
        )
    info = redis.Redis.from_url(redis_url).info("server")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": row[0] if row else "?",
        "postgresql_settings": settings,
        "redis": info.get("redis_version"),
    }


def code_version() -> dict[str, Any]:
    """Return the commit measured and whether product files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "app.py", "dashboard", "datasources", "layouts", "callbacks")
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "product_changes": changed.splitlines()}


def peak_rss_mib(pid: int) -> float:
    """Return a process's peak resident set size (VmHWM), in MiB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_pids(pid: int) -> list[int]:
    try:
        parent = psutil.Process(pid)
        return [pid, *(child.pid for child in parent.children(recursive=True))]
    except psutil.Error:
        return []


def pids_named(name: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == name]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Return the CPU seconds of each process still alive, with its children that have exited.

    Exited children matter for PostgreSQL: autovacuum workers come and go, and
    their time lands in the postmaster's children times once reaped.
    """
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        seconds[pid] = times.user + times.system + times.children_user + times.children_system
    return seconds


class CpuMeter:
    """CPU seconds per component between ``start`` and ``stop``."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self._groups = groups
        self._before: dict[str, dict[int, float]] = {}
        self._system_before: Any = None
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pids()) for name, pids in self._groups.items()}
        self._system_before = psutil.cpu_times()

    def stop(self) -> dict[str, float]:
        for name, pids in self._groups.items():
            after = cpu_seconds(pids())
            before = self._before.get(name, {})
            self.used[name] = round(sum(after[pid] - before.get(pid, 0.0) for pid in after), 2)
        system = psutil.cpu_times()
        busy = sum(
            getattr(system, f) - getattr(self._system_before, f) for f in ("user", "system", "nice", "irq", "softirq")
        )
        idle = sum(getattr(system, f) - getattr(self._system_before, f) for f in ("idle", "iowait"))
        self.used["machine_busy"] = round(busy, 2)
        self.used["machine_idle"] = round(idle, 2)
        return self.used


def with_client_and_other(cpu: dict[str, float], client_s: float | None) -> dict[str, float]:
    """Add the clients' CPU and what nobody we know used ("other": a foreign load, the kernel)."""
    if client_s is not None:
        cpu["client"] = round(client_s, 2)
    known = sum(v for k, v in cpu.items() if not k.startswith("machine_"))
    cpu["other"] = round(max(0.0, cpu["machine_busy"] - known), 2)
    return cpu


def wait_for_quiet(threshold: float, timeout_s: float) -> float:
    """Wait until the machine's CPU use over 1 s is at most ``threshold``; return the last reading."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100
        if busy <= threshold or time.monotonic() >= deadline:
            if busy > threshold:
                print(f"   WARNING: the machine is {busy:.0%} busy with something else; figures will be low")
            return busy
        print(f"   the machine is {busy:.0%} busy with something else: waiting for it to calm down")


# ---------------------------------------------------------------------------
# The pipeline monitor: the stats counters every ~10 ms.
# ---------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Sample (monotonic time, accepted, processed) from the stats hash until stopped."""

    def __init__(self, client: redis.Redis, keys: Keys, interval_s: float = MONITOR_INTERVAL_S) -> None:
        super().__init__(name="monitor", daemon=True)
        self._client = client
        self._keys = keys
        self._interval_s = interval_s
        self._halt = threading.Event()
        self.times: list[float] = []
        self.accepted: list[int] = []
        self.processed: list[int] = []
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                accepted, processed = self._client.hmget(self._keys.stats, ("accepted", "processed"))
                self.times.append(time.monotonic())
                self.accepted.append(int(accepted or 0))
                self.processed.append(int(processed or 0))
                self._halt.wait(self._interval_s)
        except Exception as error:  # reported by the caller; the benchmark must not hang on it
            self.error = error

    def latest(self) -> tuple[float, int, int]:
        if self.error is not None:
            raise RuntimeError(f"monitor failed: {self.error!r}")
        if not self.times:
            return time.monotonic(), 0, 0
        return self.times[-1], self.accepted[-1], self.processed[-1]

    def halt(self) -> None:
        self._halt.set()
        self.join(5)

    def first_time(self, processed_at_least: int, not_before: float = 0.0) -> float | None:
        """Return the first sample time at or after ``not_before`` with processed >= the count."""
        index = max(bisect_left(self.processed, processed_at_least), bisect_left(self.times, not_before))
        return self.times[index] if index < len(self.times) else None

    def peak_backlog(self) -> int:
        return max((a - p for a, p in zip(self.accepted, self.processed, strict=True)), default=0)


# ---------------------------------------------------------------------------
# The client: keep-alive HTTP connections posting pre-serialized batches.
# ---------------------------------------------------------------------------

# One record per batch: index, sent, answered (monotonic), status, accepted, duplicates, rejected, 429s.
Record = tuple[int, float, float, int, int, int, int, int]


class Poster:
    """One keep-alive connection to the API."""

    def __init__(self, port: int, token: str) -> None:
        self._port = port
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents-batch+json",
            "Connection": "keep-alive",
        }
        self._connection: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def connect(self) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=120)
        self._connection.connect()
        self._connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def post(self, body: bytes) -> tuple[int, bytes, str | None]:
        for attempt in range(3):
            if self._connection is None:
                self.connect()
            assert self._connection is not None
            try:
                self._connection.request("POST", "/api/v1/events", body=body, headers=self._headers)
                response = self._connection.getresponse()
                payload = response.read()
                return response.status, payload, response.getheader("Retry-After")
            except (http.client.HTTPException, ConnectionError, TimeoutError):
                # The server closed an idle keep-alive connection: reconnect.
                # A resent batch can only come back as duplicates, never twice.
                self.close()
                self._connection = None
                self.reconnects += 1
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def post_batches(
    poster: Poster,
    batches: list[bytes],
    take: Callable[[], int | None],
    start_at: float,
    send_offsets: list[float] | None,
    deadline: float,
) -> list[Record]:
    """Post batches until ``take`` runs out; honour 429 Retry-After; pace when offsets are given."""
    records: list[Record] = []
    while (index := take()) is not None:
        if send_offsets is not None:
            delay = start_at + send_offsets[index] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        throttled = 0
        sent = time.monotonic()
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("posting did not finish before the deadline")
            status, payload, retry_after = poster.post(batches[index])
            if status != 429:
                break
            throttled += 1
            time.sleep(min(float(retry_after or 1), max(0.0, deadline - time.monotonic())))
        answered = time.monotonic()
        body = orjson.loads(payload) if payload else {}
        records.append(
            (
                index,
                sent,
                answered,
                status,
                int(body.get("accepted", 0)),
                int(body.get("duplicates", 0)),
                len(body.get("rejected", ())),
                throttled,
            )
        )
    return records


# Shared with forked client processes (set before the fork, read after it).
_BATCHES: list[bytes] = []
_OFFSETS: list[float] | None = None


def _client_process(
    client: int,
    port: int,
    token: str,
    counter: Any,
    ready: Any,
    go: Any,
    start_at: Any,
    results: Any,
    deadline: float,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    poster = Poster(port, token)
    poster.connect()
    ready.put(client)
    if not go.wait(120):
        results.put((client, [], 0.0, 0, "never told to start"))
        return

    def take() -> int | None:
        with counter.get_lock():
            index = counter.value
            if index >= len(_BATCHES):
                return None
            counter.value = index + 1
        return index

    cpu_start = time.process_time()
    try:
        records = post_batches(poster, _BATCHES, take, start_at.value, _OFFSETS, deadline)
        error = ""
    except Exception as failure:  # reported to the parent, which fails the run
        records, error = [], repr(failure)
    results.put((client, records, time.process_time() - cpu_start, poster.reconnects, error))
    poster.close()


def run_clients(
    port: int,
    token: str,
    batches: list[bytes],
    offsets: list[float] | None,
    clients: int,
    mode: str,
    timeout_s: float,
    on_start: Callable[[], None],
) -> tuple[list[Record], float, int]:
    """Post every batch with ``clients`` concurrent clients; return records, client CPU s, reconnects."""
    global _BATCHES, _OFFSETS
    deadline = time.monotonic() + timeout_s
    if mode == "thread":
        lock = threading.Lock()
        indices = iter(range(len(batches)))
        posters = [Poster(port, token) for _ in range(clients)]
        for poster in posters:
            poster.connect()
        outcomes: list[list[Record]] = [[] for _ in range(clients)]
        errors: list[BaseException] = []

        def take() -> int | None:
            with lock:
                return next(indices, None)

        def client(k: int, start_at: float) -> None:
            try:
                outcomes[k] = post_batches(posters[k], batches, take, start_at, offsets, deadline)
            except BaseException as error:
                errors.append(error)

        on_start()
        cpu_start = time.process_time()  # the whole process: clients and the monitor thread
        start_at = time.monotonic()
        threads = [threading.Thread(target=client, args=(k, start_at), daemon=True) for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 5)
        cpu = time.process_time() - cpu_start
        for poster in posters:
            poster.close()
        if errors or any(t.is_alive() for t in threads):
            raise RuntimeError(f"client failed: {errors[0]!r}" if errors else "clients did not finish in time")
        return [r for records in outcomes for r in records], cpu, sum(p.reconnects for p in posters)

    context = mp.get_context("fork")
    _BATCHES, _OFFSETS = batches, offsets  # inherited by the forked clients, not pickled
    counter = context.Value("q", 0)
    start_value = context.Value("d", 0.0)
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    processes = [
        context.Process(
            target=_client_process,
            args=(k, port, token, counter, ready, go, start_value, results, deadline),
            daemon=True,
        )
        for k in range(clients)
    ]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            ready.get(timeout=60)
        on_start()
        start_value.value = time.monotonic()
        go.set()
        records: list[Record] = []
        cpu, reconnects, failures = 0.0, 0, []
        for _ in processes:
            _, got, client_cpu, client_reconnects, error = results.get(
                timeout=max(1.0, deadline - time.monotonic()) + 10
            )
            records.extend(got)
            cpu += client_cpu
            reconnects += client_reconnects
            if error:
                failures.append(error)
        if failures:
            raise RuntimeError(f"client failed: {failures[0]}")
        return records, cpu, reconnects
    finally:
        for process in processes:
            process.join(2)
            if process.is_alive():
                process.terminate()
                process.join(2)
        _BATCHES, _OFFSETS = [], None


# ---------------------------------------------------------------------------
# One run: a deployment, a scenario, its figures.
# ---------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (as the contract defines p95)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-int(share * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


class Maintenance(threading.Thread):
    """``VACUUM (ANALYZE)`` every ``interval_s`` while the load runs: what autovacuum would do.

    Autovacuum is off on some servers (this machine's, for one). Without it the
    planner never learns the size of ``events`` and the worker's pair queries
    fall back to scanning every event of a type; rollups keep every dead row.
    """

    def __init__(self, database_url: str, interval_s: float) -> None:
        super().__init__(name="maintenance", daemon=True)
        self._url = database_url
        self._interval_s = interval_s
        self._halt = threading.Event()
        self.runs: list[float] = []
        self.error: Exception | None = None
        self._connection: psycopg.Connection | None = None

    def run(self) -> None:
        if self._interval_s <= 0:
            return
        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as connection:
                self._connection = connection
                while not self._halt.wait(self._interval_s):
                    began = time.monotonic()
                    connection.execute("VACUUM (ANALYZE)")
                    self.runs.append(time.monotonic() - began)
        except psycopg.errors.QueryCanceled:
            pass  # halted in the middle of a VACUUM
        except Exception as error:  # reported by the caller; the load goes on without it
            self.error = error
        finally:
            self._connection = None

    def halt(self) -> dict[str, Any]:
        self._halt.set()
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.cancel()  # a VACUUM under way stops now; the next one after the load redoes it
        self.join(60)
        return {
            "interval_s": self._interval_s,
            "runs": len(self.runs),
            "seconds": round(sum(self.runs), 1),
            "longest_s": round(max(self.runs, default=0.0), 1),
            "error": repr(self.error) if self.error else None,
        }


class BackendWaits(threading.Thread):
    """What the database's client backends are doing, sampled from ``pg_stat_activity``.

    Each sample sorts every busy backend (the workers', the server's) into
    running, waiting on a lock, waiting on I/O or anything else, or idle in a
    transaction (its client computing between statements). The shares tell
    CPU-bound from lock-bound: two workers that queue on the same pair locks
    show as ``lock``. The benchmark's own ``VACUUM`` is left out.
    """

    CATEGORIES = ("running", "lock", "io", "other wait", "idle in transaction")
    _QUERY = (
        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
        "WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
        "AND state NOT IN ('idle', 'idle in transaction (aborted)') AND query NOT LIKE 'VACUUM%'"
    )

    def __init__(self, database_url: str, interval_s: float = 0.05) -> None:
        super().__init__(name="backend-waits", daemon=True)
        self._url = database_url
        self._interval_s = interval_s
        self._halt = threading.Event()
        self.samples = 0
        self.counts: dict[str, int] = dict.fromkeys(self.CATEGORIES, 0)
        self.locks: dict[str, int] = {}
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as connection:
                while not self._halt.wait(self._interval_s):
                    self.samples += 1
                    for state, wait_type, wait_event in connection.execute(self._QUERY):
                        self.counts[self._category(state, wait_type)] += 1
                        if wait_type == "Lock":
                            self.locks[wait_event] = self.locks.get(wait_event, 0) + 1
        except Exception as error:  # reported by the caller; the load goes on without it
            self.error = error

    @staticmethod
    def _category(state: str, wait_type: str | None) -> str:
        if state == "idle in transaction":
            return "idle in transaction"
        if wait_type is None:
            return "running"
        return {"Lock": "lock", "IO": "io"}.get(wait_type, "other wait")

    def halt(self) -> dict[str, Any]:
        self._halt.set()
        self.join(10)
        seen = sum(self.counts.values())
        return {
            "interval_s": self._interval_s,
            "samples": self.samples,
            "share": {name: round(count / seen, 3) if seen else None for name, count in self.counts.items()},
            "locks": self.locks,
            "error": repr(self.error) if self.error else None,
        }


class Deployment:
    """A fresh database and key prefix, a server, and ingest workers on demand."""

    def __init__(self, args: argparse.Namespace, processes: Processes, label: str) -> None:
        self.args = args
        self.processes = processes
        self.label = label
        self.prefix = f"bench-{uuid.uuid4().hex[:10]}"
        self.keys = Keys(self.prefix)
        self.port = free_port()
        self.database_url = fresh_database(args.pg_admin_url, args.database)
        self.env = {
            **os.environ,
            "REDIS_URL": args.redis_url,
            "DATABASE_URL": self.database_url,
            "KEY_PREFIX": self.prefix,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WORKER_BATCH": str(args.worker_batch),
            "MAX_BACKLOG": str(args.max_backlog or 2 * args.events + 1000),
            "PYTHONUNBUFFERED": "1",
        }
        self.redis = redis.Redis.from_url(args.redis_url, socket_timeout=10)
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.token = ""
        self.warmups = 0

    def prepare(self) -> None:
        python = sys.executable
        run_command([python, "app.py", "migrate"], self.env)
        output = run_command([python, "app.py", "token", "create", "--role", "ingest", "--name", "bench"], self.env)
        self.token = output.strip().splitlines()[-1]

    def start_server(self) -> None:
        args = [sys.executable, "app.py", "serve", "--workers", str(self.args.web_workers)]
        args += ["--threads", str(self.args.web_threads)]
        self.server = self.processes.start(f"{self.label}-serve", args, self.env)
        deadline = time.monotonic() + 60
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited ({self.server.returncode}); see {self.processes.log_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not answer within 60 s")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/api/v1/pipeline", headers={"Authorization": f"Bearer {self.token}"})
                if connection.getresponse().status == 403:  # an ingest token may not read: the app is up
                    connection.close()
                    break
                connection.close()
            except OSError:
                pass
            time.sleep(0.2)
        self._warm_up()

    def _warm_up(self) -> None:
        # One invalid event per request: auth cache, validation and the Lua
        # script get loaded in every web worker, and nothing is accepted.
        body = orjson.dumps([{"specversion": "1.0", "id": "warm-up"}])
        posters = [Poster(self.port, self.token) for _ in range(2 * self.args.web_workers * self.args.web_threads)]

        def hit(poster: Poster) -> None:
            for _ in range(3):
                status, _, _ = poster.post(body)
                if status != 400:
                    raise RuntimeError(f"warm-up got {status}")
            poster.close()

        errors: list[BaseException] = []

        def guarded(poster: Poster) -> None:
            try:
                hit(poster)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=guarded, args=(p,), daemon=True) for p in posters]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        if errors or any(t.is_alive() for t in threads):
            raise RuntimeError(f"warm-up failed: {errors[0]!r}" if errors else "warm-up did not finish in 30 s")
        self.warmups = 3 * len(posters)

    def start_workers(self, count: int) -> None:
        for n in range(count):
            self.workers.append(
                self.processes.start(f"{self.label}-ingest{n + 1}", [sys.executable, "app.py", "ingest"], self.env)
            )

    def wait_for_consumers(self, count: int, timeout_s: float = 60) -> float:
        """Wait until ``count`` workers have joined the consumer group; return the seconds it took."""
        began = time.monotonic()
        ensure_group(self.redis, self.keys)  # what the workers do first anyway
        while len(self.redis.xinfo_consumers(self.keys.stream, GROUP)) < count:
            if any(w.poll() is not None for w in self.workers):
                raise RuntimeError(f"an ingest worker exited; see {self.processes.log_dir}")
            if time.monotonic() - began > timeout_s:
                raise TimeoutError(f"{count} ingest workers did not join within {timeout_s} s")
            time.sleep(0.05)
        return time.monotonic() - began

    def server_pids(self) -> list[int]:
        return tree_pids(self.server.pid) if self.server else []

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.poll() is None]

    def rss(self) -> dict[str, Any]:
        server = {pid: peak_rss_mib(pid) for pid in self.server_pids()}
        workers = [peak_rss_mib(pid) for pid in self.worker_pids()]
        return {
            "server_total_mib": round(sum(server.values()), 1),
            "server_max_process_mib": round(max(server.values(), default=0), 1),
            "server_processes": len(server),
            "worker_max_mib": round(max(workers, default=0), 1),
            "worker_total_mib": round(sum(workers), 1),
        }

    def stats(self) -> dict[str, int]:
        raw = self.redis.hgetall(self.keys.stats)
        return {k.decode(): int(v) for k, v in raw.items()}

    def wait_drained(self, monitor: Monitor, accepted: int, timeout_s: float) -> float:
        """Wait until processed reaches ``accepted``; return the monotonic time it did."""
        deadline = time.monotonic() + timeout_s
        while True:
            sampled_at, _, processed = monitor.latest()
            if processed >= accepted:
                return monitor.first_time(accepted) or sampled_at
            if not self.worker_pids():
                raise RuntimeError(f"every ingest worker exited; see {self.processes.log_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {processed} of {accepted} events processed after {timeout_s} s")
            time.sleep(0.02)

    def close(self) -> None:
        for worker in self.workers:
            self.processes.stop(worker)
        if self.server is not None:
            self.processes.stop(self.server)
        if not self.args.keep:
            delete_prefix(self.redis, self.prefix)
        self.redis.close()


class Profiler:
    """py-spy record attached to the server and the workers while the clock runs (optional)."""

    def __init__(self, out_dir: Path | None, processes: Processes) -> None:
        self.out_dir = out_dir
        self.processes = processes
        self.running: list[subprocess.Popen[bytes]] = []

    def attach(self, label: str, targets: dict[str, list[int]]) -> None:
        if self.out_dir is None:
            return
        binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for role, pids in targets.items():
            for pid in pids:
                output = self.out_dir / f"{label}-{role}-{pid}.txt"
                args = [binary, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
                # --gil: only samples holding the GIL, so waits on PostgreSQL and Redis do not count.
                args += ["--output", str(output), "--nonblocking", "--gil"]
                self.running.append(self.processes.start(f"{label}-py-spy-{pid}", args, dict(os.environ)))
        time.sleep(1.0)  # py-spy needs a moment to attach

    def detach(self) -> None:
        for process in self.running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for process in self.running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
            self.processes.stop(process)
        self.running = []


def batch_bodies(events: list[dict[str, Any]], size: int) -> tuple[list[bytes], list[int]]:
    bodies, counts = [], []
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        bodies.append(orjson.dumps(chunk))
        counts.append(len(chunk))
    return bodies, counts


def pacing(counts: list[int], rate: float) -> list[float] | None:
    """Return each batch's send time offset for an open-loop ``rate`` (events/s), or None."""
    if rate <= 0:
        return None
    offsets, sent = [], 0
    for count in counts:
        offsets.append(sent / rate)
        sent += count
    return offsets


def lag_figures(records: list[Record], monitor: Monitor) -> dict[str, Any]:
    """Acceptance-to-commit lag per batch, from the 202 order and the processed counter."""
    lags: list[float] = []
    cumulative = 0
    for record in sorted(records, key=lambda r: r[2]):
        accepted = record[4]
        if not accepted:
            continue
        cumulative += accepted
        committed = monitor.first_time(cumulative, not_before=record[2])
        if committed is not None:
            lags.append(committed - record[2])
    return {
        "lag_p50_ms": _ms(percentile(lags, 0.50)),
        "lag_p95_ms": _ms(percentile(lags, 0.95)),
        "lag_max_ms": _ms(max(lags, default=None)),
        "lag_batches": len(lags),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def posting_figures(records: list[Record], counts: list[int]) -> dict[str, Any]:
    first_sent = min(r[1] for r in records)
    last_answer = max(r[2] for r in records)
    statuses: dict[str, int] = {}
    for record in records:
        statuses[str(record[3])] = statuses.get(str(record[3]), 0) + 1
    request_s = sorted(r[2] - r[1] for r in records)
    posted = sum(counts[r[0]] for r in records)
    accepted = sum(r[4] for r in records)
    seconds = last_answer - first_sent
    return {
        "posted": posted,
        "accepted": accepted,
        "duplicates": sum(r[5] for r in records),
        "rejected": sum(r[6] for r in records),
        "throttled_429": sum(r[7] for r in records),
        "statuses": statuses,
        "api_seconds": round(seconds, 3),
        "api_events_per_s": round(posted / seconds),
        "api_accepted_per_s": round(accepted / seconds),
        "request_p50_ms": _ms(percentile(request_s, 0.5)),
        "request_p95_ms": _ms(percentile(request_s, 0.95)),
        "first_sent": first_sent,
        "last_answer": last_answer,
    }


def run_once(
    args: argparse.Namespace,
    processes: Processes,
    scenario: str,
    workers: int,
    batches: list[bytes],
    counts: list[int],
    unique: int,
    repeat: int = 1,
) -> dict[str, Any]:
    """Run one scenario with ``workers`` ingest workers; return its figures."""
    label = f"{scenario}-w{workers}" + (f"-r{repeat}" if args.repeat > 1 else "")
    print(f"\n== {label}: {sum(counts):,} events in {len(batches)} batches, {args.clients} {args.client_mode} clients")
    background = wait_for_quiet(args.quiet_threshold, args.quiet_timeout)
    deployment = Deployment(args, processes, label)
    profiler = Profiler(Path(args.profile) if args.profile else None, processes)
    monitor = Monitor(deployment.redis, deployment.keys)
    # Autovacuum's work, which this machine's server has switched off: without
    # statistics the planner scans every event of a type for each pair lookup.
    maintenance = Maintenance(deployment.database_url, args.vacuum_every)
    waits = BackendWaits(deployment.database_url)
    result: dict[str, Any] = {"scenario": scenario, "workers": workers, "repeat": repeat}
    result["background_busy_before"] = round(background, 3)
    try:
        deployment.prepare()
        deployment.start_server()
        if scenario == "e2e":
            deployment.start_workers(workers)
            result["worker_start_s"] = round(deployment.wait_for_consumers(workers), 2)
        meter = CpuMeter(
            {
                "server": deployment.server_pids,
                "workers": deployment.worker_pids,
                "redis": lambda: pids_named("redis-server"),
                "postgres": lambda: pids_named("postgres"),
            }
        )
        targets = {"serve": deployment.server_pids()[1:]}  # gunicorn's workers, not its master
        if scenario == "e2e":
            targets["ingest"] = deployment.worker_pids()
        profiler.attach(label, targets)

        def on_start() -> None:
            # Started after the client processes are forked: no thread in the parent at fork time.
            monitor.start()
            meter.start()
            maintenance.start()
            if scenario == "e2e":
                waits.start()

        records, client_cpu, reconnects = run_clients(
            deployment.port,
            deployment.token,
            batches,
            pacing(counts, args.rate),
            args.clients,
            args.client_mode,
            args.timeout,
            on_start=on_start,
        )
        posted = posting_figures(records, counts)
        result.update({k: v for k, v in posted.items() if k not in ("first_sent", "last_answer")})
        result["client_reconnects"] = reconnects
        accepted = int(deployment.redis.hget(deployment.keys.stats, "accepted") or 0)

        if scenario == "e2e":
            drained_at = deployment.wait_drained(monitor, accepted, args.timeout)
            cpu = with_client_and_other(meter.stop(), client_cpu)
            result["backends"] = waits.halt()
            profiler.detach()
            e2e_seconds = drained_at - posted["first_sent"]
            result["e2e_seconds"] = round(e2e_seconds, 3)
            result["e2e_events_per_s"] = round(accepted / e2e_seconds)
            result.update(lag_figures(records, monitor))
            result["peak_backlog"] = monitor.peak_backlog()
        else:
            cpu_api = with_client_and_other(meter.stop(), client_cpu)
            profiler.detach()
            result["cpu_api_s"] = cpu_api
            # Building block 2: the stream is preloaded; now the workers alone drain it.
            meter = CpuMeter(
                {
                    "workers": deployment.worker_pids,
                    "redis": lambda: pids_named("redis-server"),
                    "postgres": lambda: pids_named("postgres"),
                }
            )
            launched = time.monotonic()
            deployment.start_workers(workers)
            result["worker_start_s"] = round(deployment.wait_for_consumers(workers), 2)
            # CPU from here on: Python's start-up is not part of the per-event cost.
            meter.start()
            waits.start()
            result["drain_metered_events"] = accepted - monitor.latest()[2]
            profiler.attach(f"{label}-drain", {"ingest": deployment.worker_pids()})
            drained_at = deployment.wait_drained(monitor, accepted, args.timeout)
            cpu = with_client_and_other(meter.stop(), None)
            result["backends"] = waits.halt()
            profiler.detach()
            first_index = next((i for i, p in enumerate(monitor.processed) if p > 0), None)
            if first_index is None:
                raise RuntimeError("the workers never committed a batch")
            first_at, first_count = monitor.times[first_index], monitor.processed[first_index]
            # From the first commit on (the start-up of the Python processes excluded).
            result["drain_seconds"] = round(drained_at - first_at, 3)
            result["drain_events_per_s"] = round((accepted - first_count) / max(drained_at - first_at, 1e-9))
            result["drain_including_start_s"] = round(drained_at - launched, 3)
        result["maintenance"] = maintenance.halt()
        result["cpu_s"] = cpu
        result["client_cpu_s"] = round(client_cpu, 2)
        result["client_us_per_event"] = round(client_cpu / posted["posted"] * 1e6, 1)
        result["rss"] = deployment.rss()

        stats = deployment.stats()
        rows = count_rows(deployment.database_url)
        result["stats"] = stats
        result["rows_in_postgres"] = rows
        result["unique_events"] = unique
        problems = []
        if rows != unique:
            problems.append(f"PostgreSQL holds {rows} events, expected {unique}")
        if stats.get("accepted", 0) != unique:
            problems.append(f"stats accepted {stats.get('accepted')} != unique events {unique}")
        if stats.get("processed", 0) != stats.get("accepted", 0):
            problems.append("processed != accepted")
        if stats.get("rejected", 0) != deployment.warmups:
            problems.append(f"{stats.get('rejected', 0) - deployment.warmups} events were rejected")
        result["verified"] = not problems
        result["problems"] = problems
        print(f"   {'verified' if not problems else 'PROBLEMS: ' + '; '.join(problems)}: {rows:,} rows in PostgreSQL")
        return result
    finally:
        if monitor.is_alive():
            monitor.halt()
        if maintenance.is_alive():
            maintenance.halt()
        if waits.is_alive():
            waits.halt()
        profiler.detach()
        deployment.close()


# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{suffix}"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    return f"{value}{suffix}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _key(result: dict[str, Any]) -> tuple[str, int]:
    return result["scenario"], result["workers"]


def report(results: list[dict[str, Any]]) -> str:
    repeated = len(results) > len({_key(r) for r in results})
    e2e = [r for r in results if r["scenario"] == "e2e"]
    split = [r for r in results if r["scenario"] == "split"]
    parts: list[str] = []
    if e2e:
        parts.append("End to end (API and workers together)")
        parts.append(
            table(
                [
                    "workers",
                    "events",
                    "API ev/s",
                    "e2e ev/s",
                    "lag p50 ms",
                    "lag p95 ms",
                    "peak backlog",
                    "req p95 ms",
                    "server RSS MiB",
                    "worker RSS MiB",
                    "verified",
                ],
                [
                    [
                        f"{r['workers']}" + (f" #{r['repeat']}" if repeated else ""),
                        _fmt(r["posted"]),
                        _fmt(r["api_events_per_s"]),
                        _fmt(r["e2e_events_per_s"]),
                        _fmt(r["lag_p50_ms"]),
                        _fmt(r["lag_p95_ms"]),
                        _fmt(r["peak_backlog"]),
                        _fmt(r["request_p95_ms"]),
                        f"{r['rss']['server_total_mib']:.0f} ({r['rss']['server_processes']} proc)",
                        f"{r['rss']['worker_max_mib']:.0f} each",
                        "yes" if r["verified"] else "NO",
                    ]
                    for r in e2e
                ],
            )
        )
    if split:
        parts.append("Building blocks (API alone, then workers alone draining the preloaded stream)")
        parts.append(
            table(
                ["workers", "events", "API-only ev/s", "drain ev/s", "drain s", "req p95 ms", "verified"],
                [
                    [
                        f"{r['workers']}" + (f" #{r['repeat']}" if repeated else ""),
                        _fmt(r["posted"]),
                        _fmt(r["api_events_per_s"]),
                        _fmt(r["drain_events_per_s"]),
                        _fmt(r["drain_seconds"]),
                        _fmt(r["request_p95_ms"]),
                        "yes" if r["verified"] else "NO",
                    ]
                    for r in split
                ],
            )
        )
    rows = []
    for r in results:
        phases = (
            [("e2e", r["cpu_s"])] if r["scenario"] == "e2e" else [("API only", r["cpu_api_s"]), ("drain", r["cpu_s"])]
        )
        for phase, cpu in phases:
            events = r["posted"] if phase != "drain" else r["drain_metered_events"]
            per_event = {k: (v / events * 1e6 if events else 0.0) for k, v in cpu.items()}
            rows.append(
                [
                    f"{phase} w{r['workers']}" + (f" #{r['repeat']}" if repeated else ""),
                    *(
                        f"{cpu[k]:.1f} s / {per_event[k]:.0f} us" if k in cpu else "-"
                        for k in ("server", "workers", "redis", "postgres", "client", "other")
                    ),
                    f"{cpu['machine_busy'] / max(cpu['machine_busy'] + cpu['machine_idle'], 1e-9):.0%}",
                ]
            )
    parts.append("CPU by component (CPU seconds / CPU microseconds per event; other = not ours, or the kernel)")
    parts.append(table(["phase", "server", "workers", "redis", "postgres", "client", "other", "machine busy"], rows))
    parts.append(
        "PostgreSQL backends while the workers ran (share of busy-backend samples, every 50 ms; "
        "idle in transaction = the worker computing between statements)"
    )
    parts.append(
        table(
            ["phase", *BackendWaits.CATEGORIES, "top lock"],
            [
                [
                    f"{'e2e' if r['scenario'] == 'e2e' else 'drain'} w{r['workers']}"
                    + (f" #{r['repeat']}" if repeated else ""),
                    *(_share(r["backends"]["share"][name]) for name in BackendWaits.CATEGORIES),
                    max(r["backends"]["locks"], key=r["backends"]["locks"].get, default="-"),
                ]
                for r in results
            ],
        )
    )
    client_us = max(r["client_us_per_event"] for r in results)
    best_api = max(r["api_events_per_s"] for r in results)
    parts.append(
        f"Client: at most {client_us:.0f} CPU-us per event, so one core could post about "
        f"{1e6 / max(client_us, 1e-9):,.0f} events/s ({1e6 / max(client_us, 1e-9) / best_api:.0f}x the best API rate): "
        "not the bottleneck."
    )
    parts.append(
        "Lag = for each batch, the time from its 202 until the 'processed' counter (polled every 10 ms) first "
        "reached the number of events accepted up to and including that batch. It assumes first-accepted, "
        "first-committed (FIFO) order; with several workers commits can overtake each other, so it is an "
        "approximation to about +-1 worker batch and +10 ms of polling."
    )
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events to post, duplicates included")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="ingest worker counts to run")
    parser.add_argument("--scenario", nargs="+", choices=("e2e", "split"), default=["e2e", "split"])
    parser.add_argument("--batch", type=int, default=500, help="events per POST")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--client-mode", choices=("process", "thread"), default="process")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--web-threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument(
        "--worker-batch", type=int, default=Settings().worker_batch, help="WORKER_BATCH of the ingest workers"
    )
    parser.add_argument("--duplicates", type=float, default=0.01, help="share of re-sent duplicates")
    parser.add_argument("--rate", type=float, default=0, help="pace the clients at this many events/s (0: flat out)")
    parser.add_argument("--max-backlog", type=int, default=0, help="MAX_BACKLOG (default: 2 x events, no 429)")
    parser.add_argument(
        "--vacuum-every", type=float, default=15, help="VACUUM (ANALYZE) every N s, as autovacuum would (0: never)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="deadline in seconds for each phase")
    parser.add_argument("--repeat", type=int, default=1, help="run every configuration this many times")
    parser.add_argument(
        "--quiet-threshold", type=float, default=0.15, help="wait before each run until the machine is this idle"
    )
    parser.add_argument("--quiet-timeout", type=float, default=120, help="give up waiting for quiet after this many s")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--database", default="tower_bench", help="database to drop and create for each run")
    parser.add_argument("--out", default=str(OUT_DIR / "ingest.json"))
    parser.add_argument(
        "--profile", metavar="DIR", help="record py-spy profiles of Python CPU (raw collapsed stacks) into DIR"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's Redis keys")
    return parser.parse_args(argv)


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so that cleanup runs for both."""

    def handle(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log_dir = OUT_DIR / "logs"
    log_dir.mkdir(exist_ok=True)
    processes = Processes(log_dir)
    machine = machine_facts(args.redis_url, args.pg_admin_url)
    code = code_version()
    dirty = f", plus {len(code['product_changes'])} uncommitted product files" if code["product_changes"] else ""
    print(f"code: commit {code['commit']}{dirty} in {ROOT}")
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"PostgreSQL {machine['postgresql']}, Redis {machine['redis']}, Python {machine['python']}"
    )

    began = time.monotonic()
    events, unique = generate_events(args.events, args.duplicates, args.seed)
    check_events(events)
    batches, counts = batch_bodies(events, args.batch)
    del events
    size = sum(len(b) for b in batches)
    print(
        f"generated {sum(counts):,} events ({unique:,} unique) in {len(batches)} batches of {args.batch}, "
        f"{size / 2**20:.1f} MiB of JSON, {size / sum(counts):.0f} B/event, in {time.monotonic() - began:.1f} s"
    )

    results: list[dict[str, Any]] = []
    status = 0
    with interrupts_as_keyboard_interrupt():
        try:
            for repeat in range(1, args.repeat + 1):
                for workers in args.workers:
                    for scenario in args.scenario:
                        results.append(run_once(args, processes, scenario, workers, batches, counts, unique, repeat))
        except KeyboardInterrupt:
            print("\ninterrupted: stopping every subprocess", file=sys.stderr)
            status = 130
        except Exception as error:
            print(f"\nbenchmark failed: {error}", file=sys.stderr)
            status = 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
            processes.stop_all()
            signal.signal(signal.SIGINT, signal.default_int_handler)

    if results:
        print("\n" + report(results))
        document = {
            "benchmark": "ingest",
            "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else None,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "code": code,
            "config": {k: v for k, v in vars(args).items() if k not in ("pg_admin_url",)},
            "lag_method": "first poll (10 ms) at which processed >= events accepted up to the batch's 202; FIFO "
            "approximation",
            "results": results,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        print(f"\nfigures written to {args.out}; subprocess logs in {log_dir}")
    if any(not r["verified"] for r in results):
        status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
