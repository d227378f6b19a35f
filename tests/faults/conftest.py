"""Fixtures for fault tests: private servers, app subprocesses and deadlines.

Each fixture owns what it starts and stops it in a ``finally``, so a failing
test never leaves a redis-server, a PostgreSQL cluster or an app process
behind. Logs of the app processes go to files under the test's ``tmp_path``;
when a test fails, their tails are added to its report.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from dashboard.runtime import Runtime
from tests.faults.outage import seeded_runtime, settings_for
from tests.faults.support import free_port, tail, wait_until

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MACHINE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LOG_FILES = pytest.StashKey[list[tuple[str, Path]]]()


# -- reporting ---------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Attach the tails of the test's process logs to a failure report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for name, path in item.stash.get(LOG_FILES, []):
            report.sections.append((f"{name}: tail of {path}", tail(path)))


def register_log(request: pytest.FixtureRequest, name: str, path: Path) -> None:
    """Have a failure report show the tail of ``path``."""
    request.node.stash.setdefault(LOG_FILES, []).append((name, path))


def _stop_process(process: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    """SIGTERM the process (and its session), then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


# -- private redis-server ----------------------------------------------------


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, which the test may kill and restart."""

    port: int
    directory: Path
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """Return a new client (no retries: the test wants to see outages)."""
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        """Start the server and wait until it answers PING (its data loaded)."""
        command = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            *self.args,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}: {tail(self.log)}")
            client = self.client()
            try:
                return bool(client.ping())
            finally:
                client.close()

        wait_until(answers, 20, f"redis-server on port {self.port}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server and wait for it to exit."""
        assert self.process is not None and self.process.poll() is None, "redis-server is not running"
        self.process.send_signal(sig)
        self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start the server again on the same port and data directory."""
        assert self.process is None or self.process.poll() is not None, "redis-server is still running"
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process, timeout_s=5)


@pytest.fixture
def private_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., PrivateRedis]]:
    """Return a factory starting redis-servers with extra args; all killed at teardown."""
    servers: list[PrivateRedis] = []

    def start(*args: str) -> PrivateRedis:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        log = tmp_path / f"redis-{len(servers)}.log"
        register_log(request, "redis-server", log)
        server = PrivateRedis(free_port(), directory, list(args), log)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


# -- private PostgreSQL cluster ----------------------------------------------


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, run as the postgres user."""

    base: Path
    port: int
    database: str = "tower"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _as_postgres(self, *command: str, timeout_s: float = 60) -> None:
        # initdb refuses to run as root; any other user runs the cluster itself.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *command],
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail(self.log)}"
            )

    def init(self) -> None:
        """Create the cluster (initdb) and its database."""
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        self.start()
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"CREATE DATABASE {self.database}")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the cluster and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (``pg_ctl stop -m MODE``) and wait until it is down."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def private_postgres(request: pytest.FixtureRequest) -> Iterator[PrivatePostgres]:
    """A fresh cluster with an empty database; stopped and removed at teardown."""
    # tmp_path is private to root; the postgres user needs a directory it owns.
    base = Path(tempfile.mkdtemp(prefix="fault-pg-"))
    (base / "sock").mkdir()
    if os.geteuid() == 0:
        for path in (base, base / "sock"):
            shutil.chown(path, "postgres", "postgres")
    cluster = PrivatePostgres(base, free_port())
    register_log(request, "postgres", cluster.log)
    try:
        cluster.init()
        yield cluster
    finally:
        try:
            if cluster.running():
                cluster.stop("immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


# -- the machine's services, one namespace per test --------------------------


@pytest.fixture
def shared_database() -> Iterator[str]:
    """Create a database of this test's own on the machine's PostgreSQL; drop it after."""
    name = f"fault_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({error})")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            admin.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def key_prefix() -> str:
    """Return a Redis key prefix no other test uses."""
    return f"fault-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def machine_redis(key_prefix: str) -> Iterator[str]:
    """Return the machine Redis URL; the test's keys are deleted afterwards."""
    client = redis.Redis.from_url(MACHINE_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {MACHINE_REDIS_URL} is not reachable ({error})")
    try:
        yield MACHINE_REDIS_URL
    finally:
        for key in client.scan_iter(match=f"{key_prefix}:*", count=1000):
            client.delete(key)
        client.close()


# -- app subprocesses --------------------------------------------------------


def app_env(redis_url: str, database_url: str, key_prefix: str, **overrides: object) -> dict[str, str]:
    """Return the environment of an app process: our stores, short fault timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        KEY_PREFIX=key_prefix,
        CLAIM_IDLE_MS="1000",
        WORKER_BLOCK_MS="200",
        HOST="127.0.0.1",
        PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    env.update({name.upper(): str(value) for name, value in overrides.items()})
    return env


@dataclass
class AppProcess:
    """One ``python app.py COMMAND`` subprocess and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process and wait for it to exit."""
        self.process.send_signal(sig)
        self.process.wait(timeout=10)

    def wait_for_log(self, text: str, timeout_s: float = 30) -> None:
        """Wait until the process logs ``text``; fail early if it exits."""

        def logged() -> bool:
            if text in self.log_text():
                return True
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{tail(self.log)}")
            return False

        wait_until(logged, timeout_s, f"{self.name} to log {text!r}")


class AppProcesses:
    """Starts app subprocesses for one test and stops every one of them."""

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self._tmp_path = tmp_path
        self._request = request
        self._started: list[AppProcess] = []

    @property
    def started(self) -> list[AppProcess]:
        """Every process started so far, killed ones included."""
        return list(self._started)

    def run(self, env: dict[str, str], *args: str, timeout_s: float = 60) -> str:
        """Run a short command (migrate, token create) to its end; return its stdout."""
        result = subprocess.run(
            [sys.executable, "app.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
        )
        assert result.returncode == 0, f"app.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        return result.stdout

    def migrate(self, env: dict[str, str]) -> None:
        self.run(env, "migrate")

    def token(self, env: dict[str, str], role: str) -> str:
        """Create a token with ``app.py token create``; return it (its last stdout line)."""
        stdout = self.run(env, "token", "create", "--role", role, "--name", f"fault-{role}")
        return stdout.strip().splitlines()[-1]

    def start(self, env: dict[str, str], *args: str) -> AppProcess:
        """Start a long-running command (ingest, serve) in its own session."""
        name = f"{'-'.join(args)}-{len(self._started)}"
        log = self._tmp_path / f"{name}.log"
        register_log(self._request, name, log)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "app.py", *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = AppProcess(name, process, log, env)
        self._started.append(started)
        return started

    def start_worker(self, env: dict[str, str]) -> AppProcess:
        """Start ``app.py ingest`` and wait until its worker runs."""
        worker = self.start(env, "ingest")
        worker.wait_for_log("worker_started")
        return worker

    def stop_all(self) -> None:
        for started in self._started:
            _stop_process(started.process)


@pytest.fixture
def app_processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AppProcesses]:
    """Return a launcher of app subprocesses; every one is stopped at teardown."""
    processes = AppProcesses(tmp_path, request)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture
def redis_runtime(private_redis, shared_database: str, key_prefix: str) -> Iterator[tuple[Runtime, PrivateRedis]]:  # type: ignore[no-untyped-def]
    """A seeded network day on a private redis-server (which a test may kill) and the shared database."""
    server = private_redis("--appendonly", "yes", "--appendfsync", "always")  # its data survives a SIGKILL
    runtime = seeded_runtime(settings_for(server.url, shared_database, key_prefix))
    try:
        yield runtime, server
    finally:
        runtime.redis.close()
        runtime.engine.dispose()


@pytest.fixture
def postgres_runtime(  # type: ignore[no-untyped-def]
    machine_redis: str, private_postgres: PrivatePostgres, key_prefix: str
) -> Iterator[tuple[Runtime, PrivatePostgres]]:
    """A seeded network day on the machine's Redis and a private PostgreSQL cluster (which a test may stop)."""
    runtime = seeded_runtime(settings_for(machine_redis, private_postgres.url, key_prefix))
    try:
        yield runtime, private_postgres
    finally:
        runtime.redis.close()
        runtime.engine.dispose()
