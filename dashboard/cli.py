"""The command line of contract section 4: demo, migrate, serve, ingest, token."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from dashboard.auth import ROLES, create_token
from dashboard.db import SchemaNotCurrent, migrate, require_current_schema
from dashboard.live import RebuildRunning, rebuild
from dashboard.logs import configure_logging
from dashboard.runtime import Runtime
from dashboard.settings import Settings

log = logging.getLogger("dashboard.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Last-mile control tower. With no command: the whole system in one process "
        "(embedded when neither REDIS_URL nor DATABASE_URL is set).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("migrate", help="create or upgrade the database schema")
    serve = commands.add_parser("serve", help="the web app (dashboard and API) alone, under gunicorn")
    serve.add_argument("--workers", type=int, default=2, help="web worker processes (default 2)")
    serve.add_argument("--threads", type=int, default=8, help="threads per web worker (default 8)")
    commands.add_parser("ingest", help="one ingest worker of the consumer group")
    commands.add_parser("rebuild", help="recompute Redis live aggregates from history (after Redis lost them)")
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
    runtime.start_worker_thread(threading.Event())
    app = create_app(runtime=runtime)
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

        def load(self):  # type: ignore[no-untyped-def]
            return create_app(settings).server

    Server().run()
    return 0


def run_ingest(settings: Settings) -> int:
    """Run one ingest worker until SIGTERM or SIGINT."""
    if settings.redis_url is None:
        hint = "set REDIS_URL (and DATABASE_URL); the embedded demo runs its own worker"
        log.error("ingest_needs_redis", extra={"hint": hint})
        return 2
    runtime = Runtime.open(settings)
    require_current_schema(runtime.engine)
    runtime.worker().run(_stop_on_signals())
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
            revision = migrate(Runtime.open(settings).engine)
            log.info("migrated", extra={"revision": revision})
            return 0
        if args.command == "serve":
            return run_serve(settings, args.workers, args.threads)
        if args.command == "ingest":
            return run_ingest(settings)
        if args.command == "rebuild":
            runtime = Runtime.open(settings)
            require_current_schema(runtime.engine)
            report = rebuild(runtime.redis, runtime.engine, runtime.keys, settings.live_retention_s)
            print(
                f"rebuilt {report.hashes} live hashes ({report.fields} fields, {report.open_shifts} open shifts) "
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
    return 2
