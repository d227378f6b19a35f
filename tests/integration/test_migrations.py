"""Upgrading a database that already holds history keeps it usable by the new code."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
import sqlalchemy as sa

from dashboard.db import (
    create_db_engine,
    current_revision,
    downgrade,
    head_revision,
    migrate,
    rollups,
    rollups_unfolded,
    sites,
)
from dashboard.folding import marks
from dashboard.settings import Settings
from tests.conftest import PG_ADMIN_URL, REDIS_URL

ROOT = Path(__file__).resolve().parents[2]

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
# One index per correlation id that is read, and one for the rare mode changes.
HEAD_INDEXES = {"events_order", "events_route", "events_worker", "events_mode_changes"}
# Events as revision 0005 stored them: the stop sequence only inside the payload.
OLD_EVENTS = [
    ("e-stop", "stop.arrived", {"site_id": "SEA1", "route_id": "R1", "stop_seq": 3, "planned_drive_s": 600}),
    ("e-attempt", "delivery.attempted", {"site_id": "SEA1", "route_id": "R1", "order_id": "O1", "stop_seq": 3}),
    ("e-truck", "truck.departed", {"site_id": "SEA1", "route_id": "R1", "dock_id": "D1"}),
]


@pytest.fixture
def pg_engine() -> Iterator[sa.Engine]:
    name = f"tower_migration_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    engine = create_db_engine(Settings(database_url=PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"))
    yield engine
    engine.dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_db_engine(Settings(var_dir=tmp_path))
    yield engine
    engine.dispose()


def _store_old_events(engine: sa.Engine) -> None:
    rows = [
        {
            "source": "/test",
            "id": key,
            "type": kind,
            "site_id": data["site_id"],
            "time": T0,
            "received_at": T0,
            "stream_id": f"1-{index}",
            "route_id": data["route_id"],
            "payload": orjson.dumps({"source": "/test", "id": key, "type": kind, "data": data}).decode(),
        }
        for index, (key, kind, data) in enumerate(OLD_EVENTS)
    ]
    payload = "CAST(:payload AS jsonb)" if engine.dialect.name == "postgresql" else ":payload"
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO events (source, id, type, site_id, time, received_at, stream_id, route_id, payload) "
                f"VALUES (:source, :id, :type, :site_id, :time, :received_at, :stream_id, :route_id, {payload})"
            ),
            rows,
        )


@pytest.mark.parametrize("engine_name", ["pg_engine", "sqlite_engine"])
def test_upgrade_fills_stop_seq_of_stored_events(request: pytest.FixtureRequest, engine_name: str) -> None:
    engine: sa.Engine = request.getfixturevalue(engine_name)
    assert migrate(engine, "0005") == "0005"
    _store_old_events(engine)

    assert migrate(engine) == head_revision()

    with engine.connect() as connection:
        found = dict(connection.execute(sa.text("SELECT id, stop_seq FROM events")).all())
        indexes = {index["name"] for index in sa.inspect(connection).get_indexes("events")}
        sample_indexes = {index["name"] for index in sa.inspect(connection).get_indexes("samples")}
    assert found == {"e-stop": 3, "e-attempt": 3, "e-truck": None}
    assert indexes == HEAD_INDEXES
    assert sample_indexes == set()  # read only by their primary key


@pytest.mark.parametrize("engine_name", ["pg_engine", "sqlite_engine"])
def test_downgrade_restores_the_indexes_of_0007(request: pytest.FixtureRequest, engine_name: str) -> None:
    engine: sa.Engine = request.getfixturevalue(engine_name)
    migrate(engine, "0007")
    before = _event_indexes(engine)
    migrate(engine)

    assert downgrade(engine, "0007") == "0007"

    assert _event_indexes(engine) == before
    assert {"events_route_pairs", "events_order_pairs", "events_worker_shifts", "events_type_time"} <= set(before)


ROLLUPS_OF_0008 = [
    # (scope, grain, field, value) in one bucket: the network's rows were its sites' sums.
    ("SEA1", "m", "attempts", 2.0),
    ("PDX1", "m", "attempts", 3.0),
    ("*", "m", "attempts", 5.0),
    ("SEA1", "h", "attempts", 2.0),
    ("PDX1", "h", "attempts", 3.0),
    ("*", "h", "attempts", 5.0),
]


@pytest.mark.parametrize("engine_name", ["pg_engine", "sqlite_engine"])
def test_the_network_minutes_go_and_come_back_as_the_sites_sums(
    request: pytest.FixtureRequest, engine_name: str
) -> None:
    engine: sa.Engine = request.getfixturevalue(engine_name)
    migrate(engine, "0008")
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO rollups VALUES (:scope, :grain, :bucket, :field, :value)"),
            [{"scope": s, "grain": g, "bucket": T0, "field": f, "value": v} for s, g, f, v in ROLLUPS_OF_0008],
        )

    migrate(engine)
    assert _rollups(engine) == {row for row in ROLLUPS_OF_0008 if row[:2] != ("*", "m")}

    downgrade(engine, "0008")
    assert _rollups(engine) == set(ROLLUPS_OF_0008)


@pytest.mark.parametrize("engine_name", ["pg_engine", "sqlite_engine"])
def test_downgrade_from_0011_folds_what_waits_for_its_fold(request: pytest.FixtureRequest, engine_name: str) -> None:
    """The older workers rewrite hour and day rows by their deltas: those must already hold every minute."""
    engine: sa.Engine = request.getfixturevalue(engine_name)
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(
            sites.insert(), [{"site_id": s, "first_event_time": T0, "last_event_time": T0} for s in ("SEA1", "PDX1")]
        )
        connection.execute(
            rollups.insert(),
            [
                {"scope": s, "grain": "m", "bucket": T0 + timedelta(minutes=m), "field": "attempts", "value": v}
                for s, m, v in (("SEA1", 1, 2.0), ("SEA1", 2, 1.0), ("PDX1", 1, 3.0))
            ],
        )
        connection.execute(rollups_unfolded.insert(), marks([("SEA1", T0), ("PDX1", T0)]))

    downgrade(engine, "0010")

    folded = {("SEA1", "attempts", 3.0), ("PDX1", "attempts", 3.0), ("*", "attempts", 6.0)}
    assert {(s, f, v) for s, g, f, v in _rollups(engine) if g == "h"} == folded
    assert {(s, f, v) for s, g, f, v in _rollups(engine) if g == "d"} == folded
    with engine.connect() as connection:
        assert "rollups_unfolded" not in sa.inspect(connection).get_table_names()


def _rollups(engine: sa.Engine) -> set[tuple[str, str, str, float]]:
    with engine.connect() as connection:
        return {tuple(row) for row in connection.execute(sa.text("SELECT scope, grain, field, value FROM rollups"))}


def _event_indexes(engine: sa.Engine) -> dict[str, tuple[tuple[str, ...], str]]:
    """Return each index on events: its columns and its condition ('' for none)."""
    with engine.connect() as connection:
        found = sa.inspect(connection).get_indexes("events")
    shapes = {}
    for index in found:
        options = index.get("dialect_options", {})
        where = options.get("postgresql_where", options.get("sqlite_where"))
        shapes[index["name"]] = (tuple(index["column_names"]), "" if where is None else str(where))
    return shapes


def _migrate_command(engine: sa.Engine, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "app.py", "migrate", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_migrate_down_to_takes_the_schema_back_for_an_older_release(pg_engine: sa.Engine) -> None:
    assert _migrate_command(pg_engine).returncode == 0
    assert current_revision(pg_engine) == head_revision()

    result = _migrate_command(pg_engine, "--down-to", "0007")

    assert result.returncode == 0, result.stderr
    assert current_revision(pg_engine) == "0007"
    assert "events_order_pairs" in _event_indexes(pg_engine)


def test_migrate_down_to_an_unknown_revision_says_so_and_changes_nothing(pg_engine: sa.Engine) -> None:
    migrate(pg_engine)

    result = _migrate_command(pg_engine, "--down-to", "0042")

    assert result.returncode == 2
    assert "cannot take the schema back to '0042'" in result.stderr
    assert current_revision(pg_engine) == head_revision()


def _migrate_at_once(env: dict[str, str], processes: int = 3) -> list[tuple[int, str]]:
    started = [
        subprocess.Popen(
            [sys.executable, "app.py", "migrate"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(processes)
    ]
    return [(process.wait(timeout=60), process.stderr.read().decode()[-2000:]) for process in started]


def test_processes_that_migrate_at_once_all_succeed(pg_engine: sa.Engine, tmp_path: Path) -> None:
    # The demo and a `token create` started beside it, or several containers, each migrate
    # a fresh database at once: without a lock, one creates a table the other just made.
    postgres = {"REDIS_URL": REDIS_URL, "DATABASE_URL": pg_engine.url.render_as_string(hide_password=False)}
    sqlite_dirs = [tmp_path / f"try-{n}" for n in range(3)]
    for env in [postgres, *({"VAR_DIR": str(folder)} for folder in sqlite_dirs)]:
        for returncode, stderr in _migrate_at_once({"PATH": "/usr/bin:/bin", **env}):
            assert returncode == 0, stderr
    assert current_revision(pg_engine) == head_revision()
    for folder in sqlite_dirs:
        engine = create_db_engine(Settings(var_dir=folder))
        assert current_revision(engine) == head_revision()
        engine.dispose()
