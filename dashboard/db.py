"""The history store's schema, engine and migrations (SQLAlchemy 2, Alembic).

PostgreSQL in production, SQLite for the embedded demo: the same tables and
the same code, only the URL differs.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.dialects.postgresql import JSONB

from dashboard.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")

metadata = sa.MetaData()

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

events = sa.Table(
    "events",
    metadata,
    sa.Column("source", sa.String(256), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("time", Timestamp, nullable=False),
    sa.Column("received_at", Timestamp, nullable=False),
    # The Redis Stream entry that carried it: tells a redelivery of the same
    # accepted event from a second event with the same key.
    sa.Column("stream_id", sa.String(41), nullable=False),
    sa.Column("order_id", sa.String(64)),
    sa.Column("route_id", sa.String(64)),
    sa.Column("driver_id", sa.String(64)),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("dock_id", sa.String(64)),
    # A stop event's place on its route: pairing looks partners up by (route_id, stop_seq).
    sa.Column("stop_seq", sa.Integer),
    sa.Column("payload", Json, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
)

# Rollups: per scope (a site_id, or NETWORK for all sites), grain ('m', 'h',
# 'd') and bucket start, one row per field (see dashboard.metrics).
rollups = sa.Table(
    "rollups",
    metadata,
    sa.Column("scope", sa.String(32), primary_key=True),
    sa.Column("grain", sa.String(1), primary_key=True),
    sa.Column("bucket", Timestamp, primary_key=True),
    sa.Column("field", sa.String(48), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

# The (site, hour) pairs whose minute rows changed since their hour and day
# rows (and the network's) were last folded from them: see dashboard.folding.
# Each row carries its hour's and day's bounds, so that SQL needs no date
# arithmetic of its dialect to join minutes and hours to it.
rollups_unfolded = sa.Table(
    "rollups_unfolded",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("hour", Timestamp, primary_key=True),
    sa.Column("hour_end", Timestamp, nullable=False),
    sa.Column("day", Timestamp, nullable=False),
    sa.Column("day_end", Timestamp, nullable=False),
)

# The latency sample each anchor event currently gives, so that a late half
# of a pair can move it from one histogram bucket to another.
samples = sa.Table(
    "samples",
    metadata,
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("source", sa.String(256), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("group_key", sa.String(64), nullable=False),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("time", Timestamp, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
)

# Each shift_started and the end it is currently paired with (None: open).
shifts = sa.Table(
    "shifts",
    metadata,
    sa.Column("source", sa.String(256), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("worker_id", sa.String(64), nullable=False),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("start", Timestamp, nullable=False),
    sa.Column("end", Timestamp),
    sa.Column("hourly_cost", sa.Float, nullable=False),
)

# Rollup changes committed with history, waiting to be applied to Redis.
live_outbox = sa.Table(
    "live_outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("deltas", Json, nullable=False),
    sqlite_autoincrement=True,
)

# Current state, "as of now", for the site pages.
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("priority", sa.String(16)),
    sa.Column("created_at", Timestamp),
    sa.Column("promised_start", Timestamp),
    sa.Column("promised_end", Timestamp),
    sa.Column("promise_time", Timestamp),
    sa.Column("stage", sa.String(16)),
    sa.Column("stage_rank", sa.SmallInteger),
    sa.Column("stage_time", Timestamp),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
)

docks = sa.Table(
    "docks",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("dock_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("status_time", Timestamp, nullable=False),
)

routes = sa.Table(
    "routes",
    metadata,
    sa.Column("route_id", sa.String(64), primary_key=True),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("dock_id", sa.String(64)),
    sa.Column("arrived_at", Timestamp),
    sa.Column("loading_started_at", Timestamp),
    sa.Column("departed_at", Timestamp),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("role", sa.String(16)),
    sa.Column("shift_state", sa.String(8)),
    sa.Column("shift_time", Timestamp),
    sa.Column("absent_at", Timestamp),
)

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("first_event_time", Timestamp, nullable=False),
    sa.Column("last_event_time", Timestamp, nullable=False),
)


# Degradation modes (dashboard.modes): the current state per mode and scope (a
# site_id, or '*' for the whole network), and an append-only trail of changes.
mode_states = sa.Table(
    "mode_states",
    metadata,
    sa.Column("mode", sa.String(64), primary_key=True),
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("params", Json, nullable=False),
    sa.Column("changed_at", Timestamp, nullable=False),
    sa.Column("changed_by", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

mode_audit = sa.Table(
    "mode_audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("mode", sa.String(64), nullable=False),
    sa.Column("site_id", sa.String(32), nullable=False),
    # Null on the first change of a mode and scope: there was no state before.
    sa.Column("old_enabled", sa.Boolean),
    sa.Column("new_enabled", sa.Boolean, nullable=False),
    sa.Column("old_params", Json),
    sa.Column("new_params", Json, nullable=False),
    sa.Column("changed_at", Timestamp, nullable=False),
    sa.Column("changed_by", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)


# Alerts (dashboard.alerts, dashboard.alerting): every alert ever opened, and
# the condition episodes the evaluator is timing. site_id is a site or '*'.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("site_id", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("opened_at", Timestamp, nullable=False),
    sa.Column("acknowledged_at", Timestamp),
    sa.Column("acknowledged_by", sa.String(256)),
    sa.Column("comment", sa.Text),
    sa.Column("resolved_at", Timestamp),
    sa.Column("resolved_by", sa.String(256)),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("suggestion", sa.Text),
    sa.Column("last_true_at", Timestamp, nullable=False),
    sqlite_autoincrement=True,
)
# One alert not yet resolved per rule and scope, whatever races happen.
sa.Index(
    "alerts_one_unresolved",
    alerts.c.rule,
    alerts.c.site_id,
    unique=True,
    postgresql_where=alerts.c.status != "resolved",
    sqlite_where=alerts.c.status != "resolved",
)
sa.Index("alerts_opened_at", alerts.c.opened_at)

alert_conditions = sa.Table(
    "alert_conditions",
    metadata,
    sa.Column("rule", sa.String(32), primary_key=True),
    sa.Column("site_id", sa.String(32), primary_key=True),
    sa.Column("since", Timestamp, nullable=False),
    sa.Column("alerted", sa.Boolean, nullable=False),
)


class SchemaNotCurrent(RuntimeError):
    """The database schema is missing or older than this code."""


def reset_history(engine: sa.Engine) -> None:
    """Empty every table but the API tokens (the embedded demo starts afresh each time)."""
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            if table is not api_tokens:
                connection.execute(table.delete())


def create_db_engine(settings: Settings) -> sa.Engine:
    """Return an engine for the history store (no connection is made yet)."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        # A database that hangs rather than refuses must not hold a page past its refresh.
        pool_timeout=3,
        # JIT compiles the 90-day rollup sums for longer than they run (60 ms -> 25 ms without).
        connect_args={"connect_timeout": 3, "options": "-c jit=off"},
        # orjson both ways: workers read payloads back to pair events.
        json_serializer=lambda value: orjson.dumps(value).decode(),
        json_deserializer=orjson.loads,
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the web thread read while the ingest thread writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


# The PostgreSQL advisory lock that one schema change at a time holds ("tower" in ASCII).
_SCHEMA_LOCK = 0x746F776572


@contextmanager
def _schema_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold, across processes, the lock that lets one schema change run at a time.

    Processes that start together (the demo and a `token create` beside it,
    or several containers) all migrate: without it, two would create the same
    table and one would fail. The second waits, then finds the schema current.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK})
            connection.commit()  # a session lock: held across the migration's own transactions
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK})
                connection.commit()
    elif engine.url.database and engine.url.database != ":memory:":
        # SQLite runs DDL outside transactions, so a file lock beside the database serializes it.
        with open(f"{engine.url.database}.schema-lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    else:
        yield  # an in-memory database belongs to one process


def migrate(engine: sa.Engine, revision: str = "head") -> str:
    """Create or upgrade the schema to ``revision`` (the newest by default); return it."""
    with _schema_lock(engine):
        command.upgrade(_alembic_config(engine), revision)
    return current_revision(engine) or ""


class UnknownRevision(ValueError):
    """A schema revision this code does not know, or not one to go back to."""


def downgrade(engine: sa.Engine, revision: str) -> str:
    """Take the schema back to ``revision``, as the code of an older release needs it; return it."""
    try:
        with _schema_lock(engine):
            command.downgrade(_alembic_config(engine), revision)
    except CommandError as error:
        raise UnknownRevision(f"cannot take the schema back to {revision!r}: {error}") from error
    return current_revision(engine) or ""


def head_revision() -> str:
    """Return the newest revision this code knows."""
    script = ScriptDirectory.from_config(_alembic_config(sa.create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """Return the revision the database is at, or None for an empty one."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current_schema(engine: sa.Engine) -> None:
    """Raise SchemaNotCurrent, saying what to run, unless migrations are current."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotCurrent(
            f"database schema is at {current or 'nothing'}, this code needs {head}: run 'python app.py migrate' first"
        )
