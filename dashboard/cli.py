"""The command line of contract section 4: demo, migrate, serve, ingest, token."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime

from dashboard.alerting import start_alert_evaluator
from dashboard.auth import ROLES, create_token
from dashboard.db import SchemaNotCurrent, UnknownRevision, downgrade, migrate, require_current_schema, reset_history
from dashboard.live import RebuildRunning, rebuild
from dashboard.logs import configure_logging
from dashboard.runtime import Runtime, tune_gc
from dashboard.settings import Settings
from dashboard.simulator import (
    SCENARIOS,
    Config,
    FileSink,
    HttpSink,
    IngestorSink,
    ModesReader,
    Progress,
    Sink,
    simulate,
    site_ids,
)
from dashboard.stream import StoreUnavailable
from datasources.modes import current_modes

log = logging.getLogger("dashboard.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Last-mile control tower. With no command: the whole system in one process "
        "(embedded when neither REDIS_URL nor DATABASE_URL is set).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    migrate_command = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate_command.add_argument(
        "--down-to",
        metavar="REVISION",
        help="take the schema back to REVISION instead, for the code of an older release",
    )
    serve = commands.add_parser("serve", help="the web app (dashboard and API) alone, under gunicorn")
    serve.add_argument("--workers", type=int, default=2, help="web worker processes (default 2)")
    serve.add_argument("--threads", type=int, default=8, help="threads per web worker (default 8)")
    commands.add_parser("ingest", help="one ingest worker of the consumer group")
    commands.add_parser("rebuild", help="recompute Redis live aggregates from history (after Redis lost them)")
    simulate = commands.add_parser("simulate", help="feed a simulated network (history, then --live)")
    simulate.add_argument("--sites", type=int, default=3, help="number of sites (default 3)")
    simulate.add_argument("--seed", type=int, default=1, help="the same seed gives the same network and events")
    simulate.add_argument("--history-days", type=float, default=1.0, help="days of history up to now (default 1)")
    simulate.add_argument("--orders-per-site-day", type=int, default=900, help="demand per site (default 900)")
    simulate.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME[@SITE]",
        help=f"a fault for the last 3 hours and --live, on SITE (default: the first); one of {', '.join(SCENARIOS)}",
    )
    simulate.add_argument("--live", action="store_true", help="go on in real time after the history, until stopped")
    simulate.add_argument("--duplicates", type=float, default=0.0, help="fraction of events sent twice")
    simulate.add_argument("--disorder", type=float, default=0.0, metavar="SECONDS", help="delay some events up to")
    simulate.add_argument("--out", help="write JSON lines to this file instead of ingesting")
    simulate.add_argument("--url", help="post to a running server (with --token) instead of the stream")
    simulate.add_argument("--token", help="an ingest token for --url")
    simulate.add_argument("--end", help=argparse.SUPPRESS)  # a fixed 'now', for reproducible runs
    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_commands.add_parser("create", help="print a new API token (only its hash is stored)")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="who or what uses it; shown in audits")
    return parser


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def run_demo(settings: Settings) -> int:
    """Run everything in one process: migrations, an ingest worker, the web app."""
    from dashboard.webapp import create_app

    runtime = Runtime.open(settings)
    migrate(runtime.engine)
    stop = threading.Event()
    if settings.embedded:
        reset_history(runtime.engine)  # the in-process store starts empty: so does the demo's history
    runtime.start_worker_thread(stop)
    start_alert_evaluator(runtime, stop)
    if settings.embedded and settings.demo_feed:
        feed = threading.Thread(
            target=simulate,
            args=(Config(sites=settings.demo_sites), IngestorSink(runtime.ingestor(), stop)),
            kwargs={"live": True, "modes": modes_reader(runtime), "stop": stop},
            name="simulator",
            daemon=True,
        )
        feed.start()
    app = create_app(runtime=runtime)
    tune_gc()
    log.info(
        "demo_started",
        extra={
            "url": f"http://{settings.host}:{settings.port}/",
            "embedded": settings.embedded,
            "database": runtime.engine.url.render_as_string(hide_password=True),
        },
    )
    app.run(host=settings.host, port=settings.port, debug=False, threaded=True)
    return 0


def run_serve(settings: Settings, workers: int, threads: int) -> int:
    """Serve the dashboard and API with gunicorn."""
    from gunicorn.app.base import BaseApplication

    from dashboard.webapp import create_app

    if settings.embedded:
        log.error("serve_needs_stores", extra={"hint": "set REDIS_URL and DATABASE_URL, or run 'python app.py'"})
        return 2
    require_current_schema(Runtime.open(settings).engine)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            # Longer than a wall screen's refresh, so screens keep their connections.
            self.cfg.set("keepalive", 5)
            self.cfg.set("post_worker_init", lambda _worker: tune_gc())  # once the app is loaded

        def load(self):  # type: ignore[no-untyped-def]
            return create_app(settings).server

    Server().run()
    return 0


def _scenarios(specs: list[str]) -> list[tuple[str, str | None]]:
    scenarios = []
    for spec in specs:
        name, _, site = spec.partition("@")
        if name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
        scenarios.append((name, site or None))
    return scenarios


def modes_reader(runtime: Runtime) -> ModesReader:
    """Return a reader of the modes in force that keeps the last known ones while the stores are down."""
    last: dict = {}

    def read() -> dict:
        nonlocal last
        try:
            last = current_modes(runtime.redis, runtime.keys, runtime.engine)
        except StoreUnavailable as error:
            log.warning("modes_unavailable", extra={"error": str(error), "using": "last known modes"})
        return last

    return read


def _report_progress(progress: Progress, clock: datetime) -> None:
    rate = progress.events / max(1e-6, time.monotonic() - progress.started)
    line = f"simulated {progress.events:,} events, at {clock:%Y-%m-%d %H:%M} UTC, {rate:,.0f} events/s"
    if sys.stderr.isatty():
        print(f"\r{line}   ", end="", file=sys.stderr, flush=True)
    else:
        log.info(
            "simulator_progress",
            extra={"events": progress.events, "sim_time": clock.isoformat(), "events_per_s": round(rate)},
        )


def run_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Feed a simulated network to a file, the stream or a server."""
    config = Config(
        sites=args.sites,
        seed=args.seed,
        history_days=args.history_days,
        orders_per_site_day=args.orders_per_site_day,
        scenarios=_scenarios(args.scenario),
        duplicates=args.duplicates,
        disorder_s=args.disorder,
    )
    end = datetime.fromisoformat(args.end) if args.end else None
    stop = _stop_on_signals()
    modes = None
    if args.out:
        sink: Sink = FileSink(args.out)
    elif args.url:
        if not args.token:
            raise SystemExit("--url needs --token (an ingest token: python app.py token create --role ingest ...)")
        sink = HttpSink(args.url, args.token, stop)
    elif settings.redis_url is None:
        raise SystemExit("set REDIS_URL (and DATABASE_URL), or use --url with --token, or --out FILE")
    else:
        runtime = Runtime.open(settings)
        sink, modes = IngestorSink(runtime.ingestor(), stop), modes_reader(runtime)
    progress = simulate(config, sink, end=end, live=args.live, modes=modes, stop=stop, report=_report_progress)
    if isinstance(sink, FileSink):
        sink.close()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    log.info("simulation_done", extra={"events": progress.events, "sites": site_ids(config.sites, config.seed)})
    return 0


def run_ingest(settings: Settings) -> int:
    """Run one ingest worker until SIGTERM or SIGINT."""
    if settings.redis_url is None:
        hint = "set REDIS_URL (and DATABASE_URL); the embedded demo runs its own worker"
        log.error("ingest_needs_redis", extra={"hint": hint})
        return 2
    runtime = Runtime.open(settings)
    require_current_schema(runtime.engine)
    stop = _stop_on_signals()
    start_alert_evaluator(runtime, stop)  # evaluates only while it holds the lease: one process at a time
    tune_gc()
    runtime.worker().run(stop)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch a command; return the process exit code."""
    configure_logging()
    args = _parser().parse_args(argv)
    settings = Settings()
    try:
        if args.command is None:
            return run_demo(settings)
        if args.command == "migrate":
            engine = Runtime.open(settings).engine
            revision = downgrade(engine, args.down_to) if args.down_to else migrate(engine)
            log.info("migrated", extra={"revision": revision})
            return 0
        if args.command == "serve":
            return run_serve(settings, args.workers, args.threads)
        if args.command == "ingest":
            return run_ingest(settings)
        if args.command == "simulate":
            return run_simulate(settings, args)
        if args.command == "rebuild":
            runtime = Runtime.open(settings)
            require_current_schema(runtime.engine)
            report = rebuild(runtime.redis, runtime.engine, runtime.keys, settings.live_retention_s)
            print(
                f"rebuilt {report.hashes} live hashes ({report.fields} fields, {report.shifts} shifts) "
                f"in {report.seconds} s",
                file=sys.stderr,
            )
            return 0
        if args.command == "token":
            runtime = Runtime.open(settings)
            migrate(runtime.engine) if settings.embedded else require_current_schema(runtime.engine)
            token = create_token(runtime.engine, args.role, args.name)
            print(f"Token for {args.name} ({args.role}); it is shown only once:", file=sys.stderr)
            print(token)
            return 0
    except SchemaNotCurrent as error:
        log.error("schema_not_current", extra={"error": str(error)})
        return 2
    except RebuildRunning as error:
        log.error("rebuild_refused", extra={"error": str(error)})
        return 1
    except UnknownRevision as error:
        log.error("migrate_refused", extra={"error": str(error)})
        return 2
    return 2
