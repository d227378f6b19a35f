"""Metrics query benchmark: GET /api/v1/metrics on months of history, against SQL on the raw events.

Run on demand, not in CI (see bench/README.md)::

    .venv/bin/python bench/metrics.py                        # 3 million events, 8 sites, 90 days (~10 min)
    .venv/bin/python bench/metrics.py --events 10000000 --keep   # the issue's 10 million (~20-30 min to load)
    .venv/bin/python bench/metrics.py --reuse                # measure again on the kept database
    .venv/bin/python bench/metrics.py --events 1000000 --samples 100

It builds a fresh database (``tower_bench_metrics``) and Redis key prefix,
generates a network's history with ``dashboard.simulator`` and pushes it
through the product's aggregation code: ``direct`` (default) calls the ingest
worker's own ``process()`` in a few processes, sites partitioned across them,
with no Redis stream in between; ``workers`` posts through the Ingestor into
the stream and real ``python app.py ingest`` processes drain it. Either way the
rollups and the live Redis hashes (last 48 h) are written by the same code as
in production. While it loads, ``VACUUM (ANALYZE)`` runs every 2 minutes, as
autovacuum would (it is off on this machine's server, and without statistics
the worker's pair queries scan every event of a type).

Then it starts ``python app.py serve``, makes a viewer token, and times
sequential keep-alive requests per query kind (15-minute and 24-hour windows,
a 24-hour and a 90-day start/end range; per site and for the network). The
same 90-day query, computed straight from the ``events`` table with SQL, is the
baseline: it is timed in the same run, and its answer is compared with the
API's within the contract's tolerance.

The table goes to stdout, the figures to bench/out/metrics.json. Every
subprocess is stopped on exit, Ctrl-C included, and every wait has a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
import traceback
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.ingest import (  # noqa: E402
    CpuMeter,
    Maintenance,
    Processes,
    code_version,
    delete_prefix,
    free_port,
    fresh_database,
    interrupts_as_keyboard_interrupt,
    machine_facts,
    percentile,
    pids_named,
    run_command,
    table,
    wait_for_quiet,
    with_client_and_other,
)
from dashboard.metrics import KINDS, reference_metrics  # noqa: E402
from dashboard.stream import GROUP, Keys, ensure_group  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
# Measured on dashboard.simulator (seed 1, 8 sites, 90 days): events per order.created,
# counting every event type (routes, stops, shifts, re-packs for re-attempts).
EVENTS_PER_ORDER = 7.86
GOAL_WINDOW_P95_MS = 20.0
GOAL_RANGE_P95_MS = 100.0
GOAL_SPEEDUP = 30.0

# ---------------------------------------------------------------------------
# The plan: which simulated network, over which time.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to simulate: the network, its demand, and the span of event time."""

    sites: int
    seed: int
    orders_per_site_day: int
    start: datetime  # midnight, days before the end: the simulator's warm-up starts empty
    end: datetime  # the bulk load stops here; a catch-up then runs the clock on to "now"
    # --reuse: events before this are in history already; they are simulated again, not sent.
    resume_from: datetime | None = None

    @property
    def span_s(self) -> float:
        return (self.end - self.start).total_seconds()


def make_plan(args: argparse.Namespace, now: datetime) -> Plan:
    """Choose the demand that gives about ``args.events`` events over ``args.days`` days."""
    end = now.replace(second=0, microsecond=0)
    start = (end - timedelta(days=args.days)).replace(hour=0, minute=0)
    span_days = (end - start).total_seconds() / 86400
    orders = max(50, round(args.events / (args.sites * span_days * EVENTS_PER_ORDER)))
    return Plan(args.sites, args.seed, orders, start, end)


# ---------------------------------------------------------------------------
# Loading: simulator -> the product's aggregation code, in a few processes.
# ---------------------------------------------------------------------------

# Phases a loader reports.
RUNNING, BULK_DONE, FINISHED, FAILED = 0, 1, 2, 3


@dataclass
class Shared:
    """Counters shared between the loaders and the parent (created before the fork)."""

    events: Any  # mp.Array("q"): events handed to the pipeline, per loader
    skipped: Any  # mp.Array("q"): events simulated again but not sent (--reuse), per loader
    clock: Any  # mp.Array("d"): simulated time reached (epoch s), per loader
    phase: Any  # mp.Array("i"): RUNNING, BULK_DONE, FINISHED or FAILED, per loader
    data_end: Any  # mp.Array("d"): the simulated time the catch-up reached, per loader
    catch_up: Any  # mp.Event: the parent says "now run the clock on to the present"


class DirectSink:
    """Hand batches to the ingest worker's own ``process()``, as if read from the stream.

    The entries look like stream entries (``ms-seq`` ids, the event JSON under
    ``e``), so the worker decodes, stores, aggregates and applies the live
    outbox exactly as it does in production; only Redis's stream is skipped.
    What the worker's housekeeping does every 10 s (outbox rows, shifts that
    left every window, hours to fold) is done here as often.
    """

    def __init__(self, worker: Any) -> None:
        self._worker = worker
        self._last_ms = 0
        self._next_tidy = 0.0

    def write(self, batch: list[dict[str, Any]]) -> None:
        ms = max(int(time.time() * 1000), self._last_ms + 1)
        self._last_ms = ms
        entries = [(f"{ms}-{n}".encode(), {b"e": orjson.dumps(event)}) for n, event in enumerate(batch)]
        self._worker.process(entries)
        if time.monotonic() >= self._next_tidy:
            self.tidy()

    def tidy(self) -> None:
        self._worker.tidy()
        self._next_tidy = time.monotonic() + 10


def _redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (the product's logs) to a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)


def _loader(
    index: int, site_ids: list[str], plan: Plan, env: dict[str, str], args: argparse.Namespace, shared: Shared
) -> None:
    """Simulate this loader's sites and push their events through the pipeline (a forked child)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _redirect_output(Path(args.log_dir) / f"metrics-loader{index + 1}.log")
    try:
        _load(index, site_ids, plan, env, args, shared)
    except BaseException:
        traceback.print_exc()
        shared.phase[index] = FAILED
        sys.stderr.flush()
        os._exit(1)
    sys.stderr.flush()
    os._exit(0)


def _load(
    index: int, site_ids: list[str], plan: Plan, env: dict[str, str], args: argparse.Namespace, shared: Shared
) -> None:
    from dashboard.ingest import Ingestor
    from dashboard.logs import configure_logging
    from dashboard.runtime import Runtime
    from dashboard.settings import Settings
    from dashboard.simulator import Config, IngestorSink, Simulation

    configure_logging()
    settings = Settings(
        redis_url=env["REDIS_URL"],
        database_url=env["DATABASE_URL"],
        key_prefix=env["KEY_PREFIX"],
        worker_batch=args.batch,
    )
    runtime = Runtime.open(settings)
    sink: Any
    if args.load == "direct":
        sink = DirectSink(runtime.worker())
        batch_size = args.batch
    else:
        # Seen keys for 10 minutes only: the simulator sends no duplicates, and
        # 10 million keys kept for 48 h would take about a GiB of Redis.
        ingestor = Ingestor(runtime.redis, runtime.keys, max_backlog=args.max_backlog, dedup_ttl_s=600)
        sink = IngestorSink(ingestor)
        batch_size = 500  # what a producer posts
    sim = Simulation(Config(sites=plan.sites, seed=plan.seed, orders_per_site_day=plan.orders_per_site_day), plan.start)
    # Sites are independent (their own random streams, routes and staff), so a
    # subset per process gives each site the events it would have in one big run.
    sim.sites = [site for site in sim.sites if site.site_id in site_ids]

    # The simulator's own time format ("...T12:34:56.789Z"): comparable as text.
    resume = plan.resume_from.strftime("%Y-%m-%dT%H:%M:%S.000Z") if plan.resume_from else ""
    skipped = 0

    def feed(until: datetime) -> None:
        nonlocal skipped
        batch: list[dict[str, Any]] = []
        for event in sim.run(until):
            if event["time"] < resume:
                skipped += 1
                if skipped % 10_000 == 0:
                    shared.skipped[index] = skipped
                    shared.clock[index] = sim.clock.timestamp()
                continue
            batch.append(event)
            if len(batch) >= batch_size:
                sink.write(batch)
                shared.events[index] += len(batch)
                shared.clock[index] = sim.clock.timestamp()
                batch = []
        if batch:
            sink.write(batch)
            shared.events[index] += len(batch)
        shared.skipped[index] = skipped
        shared.clock[index] = until.timestamp()

    feed(plan.end)
    shared.phase[index] = BULK_DONE
    if not shared.catch_up.wait(args.timeout):
        raise TimeoutError("never told to catch up")
    # Run the clock on to the present, through the same path, so that the
    # windows ending now hold fresh events.
    deadline = time.monotonic() + 600
    while True:
        began = time.monotonic()
        target = datetime.now(UTC).replace(microsecond=0)
        feed(target)
        if time.monotonic() - began < 2 or time.monotonic() > deadline:
            break
    if isinstance(sink, DirectSink):
        sink.tidy()  # what a worker's next housekeeping would do, before the queries
    shared.data_end[index] = target.timestamp()
    shared.phase[index] = FINISHED


class Loaders:
    """The loader processes (forked), their shared counters and their progress line."""

    def __init__(self, args: argparse.Namespace, plan: Plan, env: dict[str, str]) -> None:
        from dashboard.simulator import site_ids

        self.args = args
        self.plan = plan
        count = max(1, min(args.loaders, plan.sites))
        sites = site_ids(plan.sites, plan.seed)
        self.partition = [sites[k::count] for k in range(count)]
        context = mp.get_context("fork")
        self.shared = Shared(
            context.Array("q", count),
            context.Array("q", count),
            context.Array("d", count),
            context.Array("i", count),
            context.Array("d", count),
            context.Event(),
        )
        self.processes = [
            context.Process(
                target=_loader, args=(k, self.partition[k], plan, env, args, self.shared), name=f"loader{k + 1}"
            )
            for k in range(count)
        ]
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for process in self.processes:
            process.start()

    def events(self) -> int:
        return int(sum(self.shared.events[:]))

    def _check(self) -> None:
        for k, process in enumerate(self.processes):
            if self.shared.phase[k] == FAILED or (process.exitcode not in (None, 0)):
                raise RuntimeError(f"loader {k + 1} failed; see {self.args.log_dir}/metrics-loader{k + 1}.log")

    def wait_phase(self, phase: int, timeout_s: float, progress: Any = None) -> None:
        """Wait until every loader reached ``phase``, printing progress every 10 s."""
        deadline = time.monotonic() + timeout_s
        last_print = time.monotonic()
        last_events, last_time = self.events(), time.monotonic()
        while not all(self.shared.phase[k] >= phase for k in range(len(self.processes))):
            self._check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"loaders did not finish within {timeout_s:.0f} s")
            time.sleep(0.5)
            if progress is not None and time.monotonic() - last_print >= 10:
                now, events = time.monotonic(), self.events()
                progress(events, (events - last_events) / (now - last_time))
                last_print, last_events, last_time = now, events, now
        self._check()

    def sim_fraction(self) -> float:
        """Return the share of the bulk's simulated time done (the slowest loader's)."""
        return min(
            max(0.0, min(1.0, (clock - self.plan.start.timestamp()) / self.plan.span_s))
            for clock in self.shared.clock[:]
        )

    def data_end(self) -> datetime:
        """Return the last whole minute every loader has passed (range queries take whole minutes)."""
        return datetime.fromtimestamp(min(self.shared.data_end[:]), UTC).replace(second=0, microsecond=0)

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


# ---------------------------------------------------------------------------
# The deployment: database, key prefix, server, ingest workers.
# ---------------------------------------------------------------------------


class Deployment:
    """The benchmark's database and key prefix, and the processes that serve them."""

    def __init__(self, args: argparse.Namespace, processes: Processes, prefix: str | None = None) -> None:
        self.args = args
        self.processes = processes
        self.prefix = prefix or f"benchm-{uuid.uuid4().hex[:10]}"
        self.keys = Keys(self.prefix)
        self.port = free_port()
        self.database_url = args.pg_admin_url.rsplit("/", 1)[0] + f"/{args.database}"
        self.env = {
            **os.environ,
            "REDIS_URL": args.redis_url,
            "DATABASE_URL": self.database_url,
            "KEY_PREFIX": self.prefix,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WORKER_BATCH": str(args.batch),
            # Acknowledged entries are trimmed at once: 10 million events kept
            # for the default 10 minutes would fill Redis's memory.
            "STREAM_RETENTION_S": "0",
            "MAX_BACKLOG": str(args.max_backlog),
            "PYTHONUNBUFFERED": "1",
        }
        self.redis = redis.Redis.from_url(args.redis_url, socket_timeout=30)
        self.server: Any = None
        self.workers: list[Any] = []
        self.token = ""

    def create(self) -> None:
        fresh_database(self.args.pg_admin_url, self.args.database)
        run_command([sys.executable, "app.py", "migrate"], self.env, timeout_s=120)

    def make_token(self) -> None:
        output = run_command(
            [sys.executable, "app.py", "token", "create", "--role", "viewer", "--name", "bench"], self.env
        )
        self.token = output.strip().splitlines()[-1]

    def start_workers(self, count: int) -> None:
        for n in range(count):
            self.workers.append(
                self.processes.start(f"metrics-ingest{n + 1}", [sys.executable, "app.py", "ingest"], self.env)
            )
        ensure_group(self.redis, self.keys)
        deadline = time.monotonic() + 60
        while len(self.redis.xinfo_consumers(self.keys.stream, GROUP)) < count:
            if any(w.poll() is not None for w in self.workers):
                raise RuntimeError(f"an ingest worker exited; see {self.processes.log_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} ingest workers did not join within 60 s")
            time.sleep(0.1)

    def stats(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self.keys.stats).items()}

    def wait_drained(self, timeout_s: float) -> None:
        """Wait until the workers processed every accepted event (workers mode)."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if stats.get("processed", 0) + stats.get("dead", 0) >= stats.get("accepted", 0):
                return
            if not any(w.poll() is None for w in self.workers):
                raise RuntimeError(f"every ingest worker exited; see {self.processes.log_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the workers did not drain the stream within {timeout_s:.0f} s: {stats}")
            time.sleep(0.5)

    def stop_workers(self) -> None:
        for worker in self.workers:
            self.processes.stop(worker)
        self.workers = []

    def start_server(self) -> None:
        args = [sys.executable, "app.py", "serve", "--workers", str(self.args.web_workers)]
        args += ["--threads", str(self.args.web_threads)]
        self.server = self.processes.start("metrics-serve", args, self.env)
        deadline = time.monotonic() + 90
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited ({self.server.returncode}); see {self.processes.log_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not answer within 90 s")
            with contextlib.suppress(OSError, http.client.HTTPException):
                getter = Getter(self.port, self.token)
                status, _ = getter.get({"window": "15m"})
                getter.close()
                if status == 200:
                    return
            time.sleep(0.3)

    def stop_server(self) -> None:
        if self.server is not None:
            self.processes.stop(self.server)
            self.server = None

    def close(self, drop: bool) -> None:
        self.stop_workers()
        self.stop_server()
        if drop:
            delete_prefix(self.redis, self.prefix)
            drop_database(self.args.pg_admin_url, self.args.database)
        self.redis.close()


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


# ---------------------------------------------------------------------------
# The HTTP client: one keep-alive connection, sequential requests.
# ---------------------------------------------------------------------------


class Getter:
    """One keep-alive connection to the metrics API."""

    def __init__(self, port: int, token: str) -> None:
        self._port = port
        self._headers = {"Authorization": f"Bearer {token}", "Connection": "keep-alive"}
        self._connection: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=120)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def get(self, params: dict[str, str]) -> tuple[int, bytes]:
        path = "/api/v1/metrics?" + urllib.parse.urlencode(params)
        for attempt in range(3):
            if self._connection is None:
                self._connection = self._connect()
            try:
                self._connection.request("GET", path, headers=self._headers)
                response = self._connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError, TimeoutError):
                # The server closed an idle keep-alive connection: reconnect.
                self.close()
                self.reconnects += 1
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Kind:
    """One query kind: a label, and its query parameters for the n-th request."""

    name: str
    label: str
    scope: str  # "network" or "site"
    window: str | None = None
    span: timedelta | None = None


def query_kinds(args: argparse.Namespace) -> list[Kind]:
    kinds = []
    for scope in ("network", "site"):
        kinds.append(Kind(f"window_15m_{scope}", f"window=15m, {scope}", scope, window="15m"))
        kinds.append(Kind(f"window_24h_{scope}", f"window=24h, {scope}", scope, window="24h"))
        kinds.append(Kind(f"range_24h_{scope}", f"start/end 24 h, {scope}", scope, span=timedelta(hours=24)))
        kinds.append(
            Kind(f"range_{args.days}d_{scope}", f"start/end {args.days} d, {scope}", scope, span=timedelta(args.days))
        )
    order = {"window_15m": 0, "window_24h": 1, "range_24h": 2}
    return sorted(kinds, key=lambda k: (order.get(k.name.rsplit("_", 1)[0], 3), k.scope))


def params_for(kind: Kind, n: int, sites: list[str], data_end: datetime) -> dict[str, str]:
    params: dict[str, str] = {}
    if kind.scope == "site":
        params["site_id"] = sites[n % len(sites)]  # every site in turn
    if kind.window is not None:
        params["window"] = kind.window
    else:
        assert kind.span is not None
        params["start"], params["end"] = _z(data_end - kind.span), _z(data_end)
    return params


def time_kind(
    getter: Getter, kind: Kind, samples: int, warmup: int, sites: list[str], data_end: datetime, deadline: float
) -> dict[str, Any]:
    """Time ``samples`` sequential requests of one kind (after ``warmup`` untimed ones)."""
    timings: list[float] = []
    answers: list[dict[str, Any]] = []
    for n in range(warmup + samples):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timing {kind.name} did not finish before the deadline")
        params = params_for(kind, n, sites, data_end)
        began = time.perf_counter()
        status, body = getter.get(params)
        elapsed = time.perf_counter() - began
        if status != 200:
            raise RuntimeError(f"GET /api/v1/metrics {params} answered {status}: {body[:300]!r}")
        if n >= warmup:
            timings.append(elapsed * 1000)
            if len(answers) < 1:
                answers.append(orjson.loads(body))
    return {
        "kind": kind.name,
        "label": kind.label,
        "samples": len(timings),
        "p50_ms": _round(percentile(timings, 0.50)),
        "p95_ms": _round(percentile(timings, 0.95)),
        "max_ms": _round(max(timings)),
        "mean_ms": _round(sum(timings) / len(timings)),
        "example": answers[0] if answers else None,
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------------------
# The baseline: the same metrics straight from the raw events table.
# ---------------------------------------------------------------------------

# Counts and rates with FILTER; p95s with percentile_disc (nearest rank, as the
# contract defines it) over the pairs; labor from shift pairs. Partners of an
# anchor event are looked up in all of history (a pair's other half may lie
# before the range), as the contract says.
RAW_SQL = """
WITH attempts AS (
    SELECT e.time, e.payload -> 'data' AS d
    FROM events e
    WHERE e.type = 'delivery.attempted' AND e.time >= %(start)s AND e.time < %(end)s {scope_e}
), counts AS (
    SELECT count(*) AS attempts,
           count(*) FILTER (WHERE d ->> 'outcome' = 'delivered') AS deliveries,
           count(*) FILTER (WHERE d ->> 'outcome' = 'delivered'
               AND time >= (d ->> 'promised_start')::timestamptz
               AND time <= (d ->> 'promised_end')::timestamptz) AS on_time,
           count(*) FILTER (WHERE (d ->> 'attempt')::int = 1) AS first_attempts,
           count(*) FILTER (WHERE (d ->> 'attempt')::int = 1 AND d ->> 'outcome' = 'delivered') AS first_delivered
    FROM attempts
), failures AS (
    SELECT coalesce(jsonb_object_agg(reason, n), '{{}}'::jsonb) AS reasons
    FROM (SELECT d ->> 'failure_reason' AS reason, count(*) AS n
          FROM attempts WHERE d ->> 'outcome' = 'failed' GROUP BY 1) f
), dock AS (
    -- each loading_started in the range: minus the latest arrival of its route at or before it
    SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY v) AS p95
    FROM (SELECT extract(epoch FROM l.time - max(a.time))::float8 AS v
          FROM events l
          JOIN events a ON a.route_id = l.route_id AND a.type = 'truck.arrived' AND a.time <= l.time
          WHERE l.type = 'truck.loading_started' AND l.time >= %(start)s AND l.time < %(end)s {scope_l}
          GROUP BY l.source, l.id, l.time) s
), departures AS (
    -- stop k's previous departure: stop k-1's, or for k = 1 the truck's (seq 0)
    SELECT route_id, time,
           CASE WHEN type = 'truck.departed' THEN 0 ELSE (payload -> 'data' ->> 'stop_seq')::int END AS seq
    FROM events WHERE type IN ('truck.departed', 'stop.departed')
), arrivals AS (
    SELECT e.source, e.id, e.route_id, e.time,
           (e.payload -> 'data' ->> 'stop_seq')::int AS seq,
           (e.payload -> 'data' ->> 'planned_drive_s')::float8 AS planned
    FROM events e
    WHERE e.type = 'stop.arrived' AND e.time >= %(start)s AND e.time < %(end)s {scope_e}
), idle AS (
    -- the latest departure at or before the arrival, else the earliest one
    SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY v) AS p95
    FROM (SELECT greatest(0, extract(epoch FROM a.time - coalesce(max(d.time) FILTER (WHERE d.time <= a.time),
                                                                  min(d.time)))::float8 - a.planned) AS v
          FROM arrivals a
          JOIN departures d ON d.route_id = a.route_id AND d.seq = a.seq - 1
          GROUP BY a.source, a.id, a.time, a.planned) s
), ready AS (
    -- each order.loaded in the range: minus the latest packing of its order at or before it
    SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY v) AS p95
    FROM (SELECT extract(epoch FROM l.time - max(p.time))::float8 AS v
          FROM events l
          JOIN events p ON p.order_id = l.order_id AND p.type = 'order.packed' AND p.time <= l.time
          WHERE l.type = 'order.loaded' AND l.time >= %(start)s AND l.time < %(end)s {scope_l}
          GROUP BY l.source, l.id, l.time) s
), shift_starts AS (
    SELECT e.source, e.id, e.worker_id, e.time AS started, (e.payload -> 'data' ->> 'hourly_cost')::float8 AS cost
    FROM events e
    WHERE e.type = 'worker.shift_started' AND e.time < %(end)s {scope_e}
), worker_shifts AS (
    -- a shift runs from its start to the worker's next shift_ended; open ones run to now
    SELECT s.started, s.cost, min(x.time) AS ended
    FROM shift_starts s
    LEFT JOIN events x ON x.worker_id = s.worker_id AND x.type = 'worker.shift_ended' AND x.time >= s.started
    GROUP BY s.source, s.id, s.started, s.cost
), labor AS (
    SELECT coalesce(sum(greatest(0, extract(epoch FROM
               least(%(end)s::timestamptz, coalesce(ended, greatest(%(now)s::timestamptz, started)))
               - greatest(%(start)s::timestamptz, started))::float8) * cost / 3600), 0) AS cost
    FROM worker_shifts
)
SELECT c.attempts, c.deliveries, c.on_time, c.first_attempts, c.first_delivered, f.reasons,
       idle.p95 AS idle_p95, dock.p95 AS dock_p95, ready.p95 AS ready_p95, labor.cost AS labor
FROM counts c, failures f, idle, dock, ready, labor
"""


def raw_sql(site_id: str | None) -> str:
    return RAW_SQL.format(
        scope_e="AND e.site_id = %(site)s" if site_id else "",
        scope_l="AND l.site_id = %(site)s" if site_id else "",
    )


def raw_metrics(
    connection: psycopg.Connection, site_id: str | None, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """Compute the contract's metrics of a range from the events table alone."""
    row = connection.execute(
        raw_sql(site_id), {"start": start, "end": end, "site": site_id, "now": now}, prepare=False
    ).fetchone()
    assert row is not None
    attempts, deliveries, on_time, first_attempts, first_delivered, reasons, idle, dock, ready, labor = row
    return {
        "attempts": attempts,
        "deliveries": deliveries,
        "on_time_rate": on_time / deliveries if deliveries else None,
        "first_attempt_rate": first_delivered / first_attempts if first_attempts else None,
        "failure_reasons": dict(sorted(reasons.items())),
        "p95_driver_idle_s": idle,
        "p95_dock_wait_s": dock,
        "p95_ready_to_truck_s": ready,
        "labor_cost": labor,
        "cost_per_delivery": labor / deliveries if deliveries else None,
    }


def time_raw(
    database_url: str, site_id: str | None, start: datetime, end: datetime, now: datetime, runs: int
) -> dict[str, Any]:
    """Run the raw-events query ``runs`` times (the first warms the cache too); return timings and the answer."""
    timings = []
    answer: dict[str, Any] = {}
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        connection.execute("SET statement_timeout = '900s'")
        for _ in range(runs):
            began = time.perf_counter()
            answer = raw_metrics(connection, site_id, start, end, now)
            timings.append((time.perf_counter() - began) * 1000)
    return {
        "runs": runs,
        "timings_ms": [round(t, 1) for t in timings],
        "p50_ms": _round(percentile(timings, 0.5), 1),
        "min_ms": _round(min(timings), 1),
        "answer": answer,
    }


# The contract's tolerance: counts exact; p95 within max(1 s, 2 %); labor within 0.01 or 1e-6 relative.
def compare(api: dict[str, Any], raw: dict[str, Any], exact_p95: bool = False) -> list[dict[str, Any]]:
    """Compare two answers field by field; return rows with a verdict each."""
    rows = []
    for name in ("attempts", "deliveries"):
        rows.append({"metric": name, "api": api[name], "raw": raw[name], "ok": api[name] == raw[name]})
    for reason in sorted(set(api["failure_reasons"]) | set(raw["failure_reasons"])):
        a, r = api["failure_reasons"].get(reason), raw["failure_reasons"].get(reason)
        rows.append({"metric": f"failure_reasons.{reason}", "api": a, "raw": r, "ok": a == r})
    for name in ("on_time_rate", "first_attempt_rate"):
        a, r = api[name], raw[name]
        ok = (a is None and r is None) or (a is not None and r is not None and abs(a - r) <= 1e-9)
        rows.append({"metric": name, "api": a, "raw": r, "ok": ok})
    for name in KINDS.values():
        a, r = api[name], raw[name]
        if a is None or r is None:
            ok = a is None and r is None
        else:
            tolerance = 1e-6 if exact_p95 else max(1.0, 0.02 * abs(r))
            ok = abs(a - r) <= tolerance
        rows.append({"metric": name, "api": a, "raw": r, "ok": ok})
    a, r = api["labor_cost"], raw["labor_cost"]
    rows.append({"metric": "labor_cost", "api": a, "raw": r, "ok": abs(a - r) <= max(0.01, 1e-6 * abs(r))})
    a, r = api["cost_per_delivery"], raw["cost_per_delivery"]
    ok = (a is None and r is None) or (a is not None and r is not None and abs(a - r) <= max(1e-4, 1e-6 * abs(r)))
    rows.append({"metric": "cost_per_delivery", "api": a, "raw": r, "ok": ok})
    return rows


def reference_check(
    database_url: str, site_id: str | None, start: datetime, end: datetime, now: datetime
) -> list[dict[str, Any]]:
    """Check the raw SQL itself against dashboard.metrics.reference_metrics (small loads only)."""
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        events = [row[0] for row in connection.execute("SELECT payload FROM events")]
        raw = raw_metrics(connection, site_id, start, end, now)
    reference = reference_metrics(events, site_id, start, end, now)
    return compare(raw, reference, exact_p95=True)


# ---------------------------------------------------------------------------
# What dominates: the product's own queries in-process, and their plans.
# ---------------------------------------------------------------------------


def in_process_breakdown(
    database_url: str, redis_url: str, prefix: str, site: str, data_end: datetime, days: int, samples: int
) -> dict[str, Any]:
    """Time HistorySource and LiveSource in this process (no HTTP); EXPLAIN the 90-day rollup query."""
    from dashboard.db import create_db_engine
    from dashboard.settings import Settings
    from datasources.history import HistorySource
    from datasources.live import LiveSource

    engine = create_db_engine(Settings(database_url=database_url, redis_url=redis_url))
    client = redis.Redis.from_url(redis_url, socket_timeout=30)
    history = HistorySource(engine)
    live = LiveSource(client, Keys(prefix))
    out: dict[str, Any] = {}

    def timed(name: str, call: Any) -> None:
        call()  # warm: connection, caches
        timings = []
        for _ in range(samples):
            began = time.perf_counter()
            call()
            timings.append((time.perf_counter() - began) * 1000)
        out[name] = {"p50_ms": _round(percentile(timings, 0.5)), "p95_ms": _round(percentile(timings, 0.95))}

    long_start = data_end - timedelta(days=days)
    for scope, site_id in (("network", None), ("site", site)):
        timed(f"history_{days}d_{scope}", lambda s=site_id: history.metrics(s, long_start, data_end, data_end))
        timed(
            f"history_24h_{scope}",
            lambda s=site_id: history.metrics(s, data_end - timedelta(hours=24), data_end, data_end),
        )

        def window(s: str | None = site_id) -> None:
            now = datetime.now(UTC)
            end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            live.metrics(s, end - timedelta(hours=24), end, now)

        timed(f"live_24h_{scope}", window)

    # The statements HistorySource runs for the long network range, captured and explained.
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    history.metrics(None, long_start, data_end, data_end)
    sa.event.remove(engine, "before_cursor_execute", capture)
    plans = []
    with engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for statement, parameters in captured:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        sizes = dict(
            cursor.execute(
                "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN "
                "('events', 'rollups', 'samples', 'shifts', 'orders', 'routes') AND relkind = 'r'"
            ).fetchall()
        )
        counts = dict(cursor.execute("SELECT grain, count(*) FROM rollups GROUP BY grain").fetchall())
        out["rollup_rows_network_range"] = cursor.execute(
            "SELECT count(*) FROM rollups WHERE scope = '*' AND bucket >= %s AND bucket < %s",
            (long_start, data_end),
        ).fetchone()[0]
    out["plans"] = plans
    out["table_mib"] = {name: round(size / 2**20, 1) for name, size in sorted(sizes.items())}
    out["rollup_rows_by_grain"] = counts
    live_keys = sum(1 for _ in client.scan_iter(match=f"{Keys(prefix).live}*", count=5000))
    out["live_hashes"] = live_keys
    client.close()
    engine.dispose()
    return out


def database_facts(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        events = connection.execute("SELECT count(*), min(time), max(time) FROM events").fetchone()
        by_type = dict(connection.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall())
        rollups = connection.execute("SELECT count(*) FROM rollups").fetchone()
        outbox = connection.execute("SELECT count(*) FROM live_outbox").fetchone()
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()
    assert events and rollups and outbox and size
    return {
        "events": events[0],
        "first_event": events[1].isoformat() if events[1] else None,
        "last_event": events[2].isoformat() if events[2] else None,
        "events_by_type": dict(sorted(by_type.items())),
        "rollup_rows": rollups[0],
        "outbox_rows_left": outbox[0],
        "database_gib": round(size[0] / 2**30, 2),
    }


def vacuum_analyze(database_url: str) -> float:
    """VACUUM (ANALYZE) the database, as autovacuum would after a bulk load; return the seconds."""
    began = time.monotonic()
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute("SET statement_timeout = 0")
        connection.execute("VACUUM (ANALYZE)")
    return time.monotonic() - began


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


def load(args: argparse.Namespace, deployment: Deployment, plan: Plan) -> dict[str, Any]:
    """Load the simulated history; return the load figures (the catch-up is started later)."""
    loaders = Loaders(args, plan, deployment.env)
    aim = f"aiming at {args.events:,} events" if plan.resume_from is None else "resuming"
    if plan.resume_from is not None:
        print(
            f"\n== resume (--reuse): simulating {plan.start:%Y-%m-%d %H:%M} to {plan.end:%Y-%m-%d %H:%M} UTC again, "
            f"sending only the events from {plan.resume_from:%Y-%m-%d %H:%M:%S} on"
        )
    print(
        f"\n== load ({args.load}): {plan.sites} sites, {plan.orders_per_site_day:,} orders per site and day, "
        f"{plan.start:%Y-%m-%d %H:%M} to {plan.end:%Y-%m-%d %H:%M} UTC ({plan.span_s / 86400:.1f} days of event "
        f"time), {aim}, {len(loaders.processes)} loader processes "
        f"({', '.join('+'.join(p) for p in loaders.partition)})"
    )
    if args.load == "workers":
        deployment.start_workers(args.workers)

    def progress(events: int, rate: float) -> None:
        elapsed = time.monotonic() - loaders.started
        fraction = loaders.sim_fraction()
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        line = f"   {events:>12,} events  {fraction:6.1%} of the days  {rate:>8,.0f} ev/s now  "
        line += f"{events / elapsed:>8,.0f} ev/s mean  elapsed {_duration(elapsed)}"
        line += f"  ETA {_duration(eta)}" if math.isfinite(eta) else ""
        if args.load == "workers":
            stats = deployment.stats()
            line += f"  backlog {stats.get('accepted', 0) - stats.get('processed', 0):,}"
        print(line, flush=True)

    meter = CpuMeter(
        {
            "loaders": lambda: [p.pid for p in loaders.processes if p.pid is not None and p.is_alive()],
            "workers": lambda: [w.pid for w in deployment.workers if w.poll() is None],
            "redis": lambda: pids_named("redis-server"),
            "postgres": lambda: pids_named("postgres"),
        }
    )
    meter.start()
    loaders.start()
    # Started after the fork: no thread in the parent at fork time.
    maintenance = Maintenance(deployment.database_url, args.vacuum_every)
    maintenance.start()
    try:
        loaders.wait_phase(BULK_DONE, args.timeout, progress)
        if args.load == "workers":
            deployment.wait_drained(args.timeout)
        bulk_s = time.monotonic() - loaders.started
        vacuums = maintenance.halt()
        bulk_events = loaders.events()
        cpu = with_client_and_other(meter.stop(), None)
        per_event = {k: round(v / max(bulk_events, 1) * 1e6) for k, v in cpu.items() if not k.startswith("machine_")}
        if plan.resume_from is None:  # resuming, the CPU goes to simulating again, not to loading
            print(
                "   CPU per event (us): "
                + ", ".join(f"{k} {v}" for k, v in per_event.items())
                + f"; machine busy {cpu['machine_busy'] / max(cpu['machine_busy'] + cpu['machine_idle'], 1e-9):.0%}"
            )
        print(
            f"   bulk load done: {bulk_events:,} events in {_duration(bulk_s)} "
            f"({bulk_events / bulk_s:,.0f} events/s through {args.load}); VACUUM (ANALYZE) ran {vacuums['runs']} times "
            f"meanwhile, {vacuums['seconds']} s in all"
        )
        figures = {
            "mode": args.load,
            "plan": {
                "sites": plan.sites,
                "orders_per_site_day": plan.orders_per_site_day,
                "start": plan.start.isoformat(),
                "end": plan.end.isoformat(),
                "days_of_event_time": round(plan.span_s / 86400, 2),
            },
            "loader_processes": len(loaders.processes),
            "batch": args.batch if args.load == "direct" else 500,
            "resumed_from": plan.resume_from.isoformat() if plan.resume_from else None,
            "simulated_again_not_sent": int(sum(loaders.shared.skipped[:])),
            "bulk_events": bulk_events,
            "bulk_seconds": round(bulk_s, 1),
            "bulk_events_per_s": round(bulk_events / bulk_s),
            "bulk_cpu_s": cpu,
            "vacuum_during_load": vacuums,
            "bulk_cpu_us_per_event": per_event,
        }
        return {"figures": figures, "loaders": loaders}
    except BaseException:
        maintenance.halt()
        loaders.stop()
        raise


def catch_up(args: argparse.Namespace, deployment: Deployment, loaders: Loaders) -> tuple[datetime, dict[str, Any]]:
    """Let the loaders run the simulated clock on to the present; return where the data ends."""
    before = loaders.events()
    began = time.monotonic()
    loaders.shared.catch_up.set()
    try:
        loaders.wait_phase(FINISHED, 900)
        if args.load == "workers":
            deployment.wait_drained(600)
    finally:
        loaders.stop()
    data_end = loaders.data_end()
    figures = {
        "catch_up_events": loaders.events() - before,
        "catch_up_seconds": round(time.monotonic() - began, 1),
        "total_events": loaders.events(),
        "data_end": data_end.isoformat(),
    }
    print(
        f"   caught up to {data_end:%Y-%m-%d %H:%M:%S} UTC: {figures['catch_up_events']:,} more events in "
        f"{figures['catch_up_seconds']} s; {figures['total_events']:,} events in all"
    )
    return data_end, figures


def check_pipeline(deployment: Deployment, expected: int | None, facts: dict[str, Any]) -> list[str]:
    """Check that history holds every event (None: not known) and no entry failed; return the problems."""
    problems = []
    if expected is not None and facts["events"] != expected:
        problems.append(f"PostgreSQL holds {facts['events']:,} events, {expected:,} were generated")
    failures = deployment.redis.hlen(deployment.keys.failures)
    dead = deployment.redis.xlen(deployment.keys.dead) if deployment.redis.exists(deployment.keys.dead) else 0
    if failures or dead:
        problems.append(f"{failures} entries failed and {dead} were dead-lettered (see the loader logs)")
    if facts["outbox_rows_left"]:
        problems.append(f"{facts['outbox_rows_left']} live outbox rows were not applied to Redis")
    return problems


def measure(
    args: argparse.Namespace, deployment: Deployment, sites: list[str], data_end: datetime
) -> list[dict[str, Any]]:
    """Time every query kind over HTTP, sequentially, on one keep-alive connection."""
    deadline = time.monotonic() + args.timeout
    # Warm every gunicorn worker and thread: a handful of connections at once.
    warmers = [Getter(deployment.port, deployment.token) for _ in range(2 * args.web_workers)]
    for kind in query_kinds(args):
        for n, getter in enumerate(warmers):
            getter.get(params_for(kind, n, sites, data_end))
    for getter in warmers:
        getter.close()
    getter = Getter(deployment.port, deployment.token)
    results = []
    try:
        for kind in query_kinds(args):
            result = time_kind(getter, kind, args.samples, 5, sites, data_end, deadline)
            results.append(result)
            print(
                f"   {kind.label:<28} p50 {result['p50_ms']:7.2f} ms  p95 {result['p95_ms']:7.2f} ms  "
                f"max {result['max_ms']:7.2f} ms  ({result['samples']} requests)",
                flush=True,
            )
    finally:
        getter.close()
    return results


def _fmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "{}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def report(document: dict[str, Any]) -> str:
    parts = []
    timings = document["api"]
    rows = []
    for result in timings:
        goal = ""
        if result["kind"].startswith("window"):
            goal = f"p95 <= {GOAL_WINDOW_P95_MS:.0f} ms: " + (
                "met" if result["p95_ms"] <= GOAL_WINDOW_P95_MS else "MISSED"
            )
        elif result["kind"] == f"range_{document['config']['days']}d_network":
            goal = f"p95 <= {GOAL_RANGE_P95_MS:.0f} ms: " + (
                "met" if result["p95_ms"] <= GOAL_RANGE_P95_MS else "MISSED"
            )
        rows.append(
            [
                result["label"],
                str(result["samples"]),
                f"{result['p50_ms']:.2f}",
                f"{result['p95_ms']:.2f}",
                f"{result['max_ms']:.2f}",
                goal,
            ]
        )
    for scope, raw in document["raw"].items():
        rows.append(
            [
                f"raw SQL {document['config']['days']} d, {scope}",
                str(raw["runs"]),
                f"{raw['p50_ms']:.0f}",
                "-",
                f"{max(raw['timings_ms']):.0f}",
                "",
            ]
        )
    parts.append(
        f"GET /api/v1/metrics on {document['database_facts']['events']:,} events "
        f"(sequential keep-alive requests; client-side ms)"
    )
    parts.append(table(["query", "n", "p50 ms", "p95 ms", "max ms", "goal"], rows))
    speed_rows = []
    for scope, speed in document["speedup"].items():
        speed_rows.append(
            [
                f"{document['config']['days']} d, {scope}",
                f"{speed['raw_p50_ms']:.0f}",
                f"{speed['api_p50_ms']:.2f}",
                f"{speed['ratio']:.0f}x",
                f"{speed['in_process_p50_ms']:.2f}" if speed.get("in_process_p50_ms") is not None else "-",
                (f">= {GOAL_SPEEDUP:.0f}x: " + ("met" if speed["ratio"] >= GOAL_SPEEDUP else "MISSED"))
                if scope == "network"
                else "",
            ]
        )
    parts.append("Rollups (through the API) against SQL on the raw events table, same run")
    parts.append(table(["range", "raw SQL p50 ms", "API p50 ms", "speedup", "in-process p50 ms", "goal"], speed_rows))
    for scope, rows_ in document["agreement"].items():
        parts.append(
            f"Agreement, {document['config']['days']} d {scope}: API (rollups) against raw SQL "
            "(counts exact; p95 within max(1 s, 2 %); labor within 0.01)"
        )
        parts.append(
            table(
                ["metric", "API", "raw SQL", "within tolerance"],
                [[r["metric"], _fmt_value(r["api"]), _fmt_value(r["raw"]), "yes" if r["ok"] else "NO"] for r in rows_],
            )
        )
    if document.get("reference"):
        ok = all(r["ok"] for r in document["reference"])
        parts.append(
            "The raw SQL itself against dashboard.metrics.reference_metrics (exact, in Python): "
            + ("identical" if ok else "DIFFERENT: " + str([r for r in document["reference"] if not r["ok"]]))
        )
    return "\n\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    # 10 million take about 20 to 30 minutes to load on 2 cores (docs/performance.md): pass
    # --events 10000000 for the full figure, with --keep and then --reuse to pay for it once.
    parser.add_argument("--events", type=int, default=3_000_000, help="events to load, about (default 3 million)")
    parser.add_argument("--sites", type=int, default=8, help="sites in the simulated network")
    parser.add_argument("--days", type=int, default=90, help="days of history, and of the long range query")
    parser.add_argument("--samples", type=int, default=200, help="timed requests per query kind")
    parser.add_argument("--load", choices=("direct", "workers"), default="direct", help="how events reach the rollups")
    parser.add_argument("--loaders", type=int, default=2, help="loader processes (direct) or feeders (workers)")
    parser.add_argument(
        "--batch", type=int, help="events per worker batch (WORKER_BATCH): default 5000 direct, 500 workers"
    )
    parser.add_argument("--workers", type=int, default=2, help="ingest workers (--load workers)")
    parser.add_argument("--max-backlog", type=int, default=200_000, help="stream backlog bound (--load workers)")
    parser.add_argument("--raw-runs", type=int, default=3, help="runs of the raw-events SQL per scope")
    parser.add_argument(
        "--vacuum-every",
        type=float,
        default=120,
        help="VACUUM (ANALYZE) every this many seconds while loading, as autovacuum would (0: never)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--web-threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument(
        "--reference-max",
        type=int,
        default=300_000,
        help="check the raw SQL against dashboard.metrics.reference_metrics when at most this many events",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="deadline in seconds for each phase")
    parser.add_argument("--quiet-threshold", type=float, default=0.15, help="wait until the machine is this idle")
    parser.add_argument("--quiet-timeout", type=float, default=120, help="give up waiting for quiet after this many s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--database", default="tower_bench_metrics", help="database to drop and create")
    parser.add_argument("--out", default=str(OUT_DIR / "metrics.json"))
    parser.add_argument("--keep", action="store_true", help="keep the database and the Redis keys afterwards")
    parser.add_argument("--load-only", action="store_true", help="stop after loading (to tune the load)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure on the database a --keep run left (bench/out/metrics-state.json); its events are simulated "
        "again and only those after its end are sent, so the windows ending now hold fresh events",
    )
    args = parser.parse_args(argv)
    if args.batch is None:
        args.batch = 5000 if args.load == "direct" else 500
    args.batch = max(1, min(args.batch, 5000))  # the ack script unpacks every id: Lua's stack allows ~8000
    return args


def run(args: argparse.Namespace, processes: Processes, document: dict[str, Any]) -> None:
    from dashboard.simulator import site_ids

    state_path = Path(args.out).resolve().parent / "metrics-state.json"
    state: dict[str, Any] | None = None
    if args.reuse:
        if not state_path.exists():
            raise SystemExit(f"--reuse: no {state_path}; run once with --keep first")
        state = orjson.loads(state_path.read_bytes())
        args.sites, args.seed, args.database = state["sites"], state["seed"], state["database"]
        plan = Plan(
            state["sites"],
            state["seed"],
            state["orders_per_site_day"],
            datetime.fromisoformat(state["start"]),
            datetime.now(UTC).replace(second=0, microsecond=0),
            # Resent events from the last minute are duplicates: history keeps the first.
            resume_from=datetime.fromisoformat(state["data_end"]) - timedelta(minutes=1),
        )
    else:
        plan = make_plan(args, datetime.now(UTC))
    sites = site_ids(args.sites, args.seed)
    deployment = Deployment(args, processes, prefix=state["prefix"] if state else None)
    document["prefix"] = deployment.prefix
    document["database"] = args.database
    wait_for_quiet(args.quiet_threshold, args.quiet_timeout)
    try:
        if state is None:
            deployment.create()
        deployment.make_token()
        began = time.monotonic()
        loaded = load(args, deployment, plan)
        loaders: Loaders = loaded["loaders"]
        document["load"] = loaded["figures"]
        try:
            print("   VACUUM (ANALYZE), as autovacuum would after a bulk load ...", flush=True)
            document["load"]["vacuum_analyze_s"] = round(vacuum_analyze(deployment.database_url), 1)
            print(f"   done in {document['load']['vacuum_analyze_s']} s")
            data_end, caught = catch_up(args, deployment, loaders)
        finally:
            loaders.stop()
        document["load"].update(caught)
        document["load"]["total_seconds"] = round(time.monotonic() - began, 1)
        deployment.stop_workers()
        facts = database_facts(deployment.database_url)
        document["database_facts"] = facts
        problems = check_pipeline(deployment, None if state else caught["total_events"], facts)
        document["problems"] = problems
        if args.keep:
            state_path.write_bytes(
                orjson.dumps(
                    {
                        "database": args.database,
                        "prefix": deployment.prefix,
                        "sites": plan.sites,
                        "seed": plan.seed,
                        "orders_per_site_day": plan.orders_per_site_day,
                        "start": plan.start.isoformat(),
                        "data_end": data_end.isoformat(),
                        "events_in_history": facts["events"],
                    },
                    option=orjson.OPT_INDENT_2,
                )
            )
        print(
            f"   history: {facts['events']:,} events, {facts['rollup_rows']:,} rollup rows, "
            f"{facts['database_gib']} GiB; " + ("verified" if not problems else "PROBLEMS: " + "; ".join(problems))
        )
        if args.load_only:
            return

        print("\n== GET /api/v1/metrics, sequential keep-alive requests")
        deployment.start_server()
        document["background_busy_before_measuring"] = round(
            wait_for_quiet(args.quiet_threshold, args.quiet_timeout), 3
        )
        document["api"] = measure(args, deployment, sites, data_end)
        deployment.stop_server()

        print(f"\n== the same {args.days}-day query from the raw events table ({args.raw_runs} runs each)")
        long_start = data_end - timedelta(days=args.days)
        now = datetime.now(UTC)
        document["raw"] = {}
        for scope, site_id in (("network", None), ("site", sites[0])):
            raw = time_raw(deployment.database_url, site_id, long_start, data_end, now, args.raw_runs)
            document["raw"][scope] = raw
            runs = ", ".join(f"{t:,.0f}" for t in raw["timings_ms"])
            print(f"   {scope:<8} p50 {raw['p50_ms']:,.0f} ms  (runs: {runs})")

        print("\n== the same queries in-process (no HTTP), and the rollup query's plan")
        breakdown = in_process_breakdown(
            deployment.database_url, args.redis_url, deployment.prefix, sites[0], data_end, args.days, 50
        )
        document["in_process"] = breakdown
        for name, figures in breakdown.items():
            if isinstance(figures, dict) and "p50_ms" in figures:
                print(f"   {name:<24} p50 {figures['p50_ms']:7.2f} ms  p95 {figures['p95_ms']:7.2f} ms")

        # The API's answers for exactly the raw query's ranges (the timed ones end at the same minute).
        from dashboard.db import create_db_engine
        from dashboard.settings import Settings
        from datasources.history import HistorySource

        engine = create_db_engine(Settings(database_url=deployment.database_url, redis_url=args.redis_url))
        history = HistorySource(engine)
        api_long = {
            "network": next(r["example"] for r in document["api"] if r["kind"] == f"range_{args.days}d_network"),
            "site": history.metrics(sites[0], long_start, data_end, now),
        }
        engine.dispose()
        document["agreement"] = {
            scope: compare(api_long[scope], document["raw"][scope]["answer"]) for scope in api_long
        }
        document["speedup"] = {}
        for scope in ("network", "site"):
            api = next(r for r in document["api"] if r["kind"] == f"range_{args.days}d_{scope}")
            raw_p50 = document["raw"][scope]["p50_ms"]
            document["speedup"][scope] = {
                "raw_p50_ms": raw_p50,
                "api_p50_ms": api["p50_ms"],
                "ratio": round(raw_p50 / api["p50_ms"], 1),
                "in_process_p50_ms": breakdown.get(f"history_{args.days}d_{scope}", {}).get("p50_ms"),
            }
        if facts["events"] <= args.reference_max:
            print("\n== checking the raw SQL against dashboard.metrics.reference_metrics")
            document["reference"] = reference_check(deployment.database_url, None, long_start, data_end, now)
        document["goals"] = goals(document, args)
    finally:
        deployment.close(drop=not args.keep)
        if args.keep:
            print(
                f"\nkept: database {args.database}, Redis prefix {deployment.prefix} "
                f"(DATABASE_URL={deployment.database_url} KEY_PREFIX={deployment.prefix}); "
                "measure again on it with --reuse"
            )
        elif state_path.exists() and orjson.loads(state_path.read_bytes()).get("database") == args.database:
            state_path.unlink()  # the database it names is gone


def goals(document: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    windows = [r for r in document["api"] if r["kind"].startswith("window")]
    long_network = next(r for r in document["api"] if r["kind"] == f"range_{args.days}d_network")
    agreement = all(row["ok"] for rows in document["agreement"].values() for row in rows)
    return {
        "window_p95_ms_max": max(r["p95_ms"] for r in windows),
        "window_goal_met": all(r["p95_ms"] <= GOAL_WINDOW_P95_MS for r in windows),
        "range_network_p95_ms": long_network["p95_ms"],
        "range_goal_met": long_network["p95_ms"] <= GOAL_RANGE_P95_MS,
        "speedup_network": document["speedup"]["network"]["ratio"],
        "speedup_goal_met": document["speedup"]["network"]["ratio"] >= GOAL_SPEEDUP,
        "answers_agree": agreement,
        "reference_agrees": all(r["ok"] for r in document["reference"]) if document.get("reference") else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log_dir = Path(args.out).resolve().parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    args.log_dir = str(log_dir)
    processes = Processes(log_dir)
    machine = machine_facts(args.redis_url, args.pg_admin_url)
    code = code_version()
    dirty = f", plus {len(code['product_changes'])} uncommitted product files" if code["product_changes"] else ""
    print(f"code: commit {code['commit']}{dirty} in {ROOT}")
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
        f"PostgreSQL {machine['postgresql']} (shared_buffers {machine['postgresql_settings'].get('shared_buffers')}), "
        f"Redis {machine['redis']}, Python {machine['python']}"
    )
    with psycopg.connect(args.pg_admin_url, connect_timeout=5) as connection:
        machine["postgresql_settings"].update(
            connection.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('autovacuum', 'work_mem', "
                "'effective_cache_size', 'max_parallel_workers_per_gather', 'jit')"
            ).fetchall()
        )
    document: dict[str, Any] = {
        "benchmark": "metrics",
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else None,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "code": code,
        "config": {k: v for k, v in vars(args).items() if k not in ("pg_admin_url",)},
    }
    status = 0
    with interrupts_as_keyboard_interrupt():
        try:
            run(args, processes, document)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping every subprocess", file=sys.stderr)
            status = 130
        except Exception as error:
            traceback.print_exc()
            print(f"\nbenchmark failed: {error}", file=sys.stderr)
            status = 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
            processes.stop_all()
            signal.signal(signal.SIGINT, signal.default_int_handler)

    if "goals" in document:
        print("\n" + report(document))
        goals_ = document["goals"]
        print(
            f"\ngoals: windows p95 <= {GOAL_WINDOW_P95_MS:.0f} ms {'met' if goals_['window_goal_met'] else 'MISSED'}; "
            f"{args.days}-day network range p95 <= {GOAL_RANGE_P95_MS:.0f} ms "
            f"{'met' if goals_['range_goal_met'] else 'MISSED'}; speedup >= {GOAL_SPEEDUP:.0f}x "
            f"{'met' if goals_['speedup_goal_met'] else 'MISSED'}; answers "
            f"{'agree' if goals_['answers_agree'] else 'DISAGREE'}"
        )
        if document.get("problems") or not goals_["answers_agree"] or goals_["reference_agrees"] is False:
            status = status or 1
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str))
    print(f"\nfigures written to {args.out}; subprocess logs in {log_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main())
