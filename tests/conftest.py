"""Fixtures for every tier: settings on real services, an app, tokens.

Integration tests use the Redis and PostgreSQL this machine runs
(TEST_REDIS_URL, TEST_PG_ADMIN_URL). Each test gets its own Redis key prefix
and empty tables, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis
import sqlalchemy as sa

from dashboard.auth import create_token
from dashboard.db import create_db_engine, metadata, migrate
from dashboard.runtime import Runtime
from dashboard.settings import Settings

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# One database per test session, so parallel sessions never share tables.
TEST_DB = f"tower_test_{os.getpid()}"
START_HINT = "start the services as .ci/run does (see README, 'Running the tests')"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """Create the test database afresh, migrated to head; yield its URL; drop it afterwards."""
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (TEST_DB,))
            admin.execute(f"DROP DATABASE IF EXISTS {TEST_DB}")
            admin.execute(f"CREATE DATABASE {TEST_DB}")
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({error}); {START_HINT}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB}"
    engine = create_db_engine(Settings(database_url=url))
    migrate(engine)
    engine.dispose()
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (TEST_DB,))
        admin.execute(f"DROP DATABASE IF EXISTS {TEST_DB}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Return the test Redis URL after checking the server answers."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({error}); {START_HINT}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    """Settings on the real services, with a key prefix of this test's own."""
    return Settings(
        redis_url=redis_url,
        database_url=database_url,
        key_prefix=f"test-{uuid.uuid4().hex[:12]}",
        claim_idle_ms=500,
        worker_block_ms=100,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime on empty tables and an empty key prefix; cleaned up afterwards."""
    rt = Runtime.open(settings)
    with rt.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    yield rt
    for key in rt.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        rt.redis.delete(key)
    rt.redis.close()
    rt.engine.dispose()


@pytest.fixture
def app(runtime: Runtime):  # type: ignore[no-untyped-def]
    """The Dash app (dashboard and API) on the test runtime."""
    from dashboard.webapp import create_app

    return create_app(runtime=runtime)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """A Flask test client of the app's server."""
    return app.server.test_client()


@pytest.fixture
def token(runtime: Runtime) -> Callable[[str], str]:
    """Return a function making a token for a role."""

    def make(role: str, name: str | None = None) -> str:
        return create_token(runtime.engine, role, name or f"{role}-tester")

    return make


def count_events(engine: sa.Engine) -> int:
    """Return how many events history holds."""
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
