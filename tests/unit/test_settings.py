"""Unit tests of the settings object: precedence, embedded mode and URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dashboard.settings import Settings

ENV_NAMES = ("REDIS_URL", "DATABASE_URL", "HOST", "PORT", "VAR_DIR", "MAX_BACKLOG", "KEY_PREFIX")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the settings' variables, in either case, from the environment."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_embedded_when_neither_url_is_set() -> None:
    assert Settings(redis_url=None, database_url=None).embedded is True
    assert Settings().embedded is True


@pytest.mark.parametrize(
    "urls",
    [
        {"redis_url": "redis://127.0.0.1:6379/0"},
        {"database_url": "postgresql://tower@127.0.0.1:5432/tower"},
        {"redis_url": "redis://127.0.0.1:6379/0", "database_url": "postgresql://tower@127.0.0.1:5432/tower"},
    ],
    ids=["redis only", "database only", "both"],
)
def test_not_embedded_when_either_url_is_set(urls: dict[str, str]) -> None:
    assert Settings(**urls).embedded is False


def test_not_embedded_when_redis_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")

    settings = Settings()

    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.embedded is False


def test_empty_urls_in_the_environment_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("DATABASE_URL", "")

    settings = Settings()

    assert settings.redis_url is None
    assert settings.database_url is None
    assert settings.embedded is True


def test_empty_url_passed_in_counts_as_unset() -> None:
    assert Settings(redis_url="", database_url=None).embedded is True


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("postgresql://u:p@db:5432/tower", "postgresql+psycopg://u:p@db:5432/tower"),
        ("postgres://u:p@db:5432/tower", "postgresql+psycopg://u:p@db:5432/tower"),
        ("postgresql+psycopg://u:p@db:5432/tower", "postgresql+psycopg://u:p@db:5432/tower"),
    ],
)
def test_sqlalchemy_url_uses_the_psycopg_driver(database_url: str, expected: str) -> None:
    assert Settings(database_url=database_url).sqlalchemy_url == expected


def test_embedded_database_is_sqlite_under_var_dir(tmp_path: Path) -> None:
    settings = Settings(redis_url=None, database_url=None, var_dir=tmp_path)

    assert settings.sqlalchemy_url == f"sqlite:///{(tmp_path / 'tower.db').resolve()}"


def test_defaults() -> None:
    settings = Settings()

    assert (settings.host, settings.port) == ("127.0.0.1", 8050)
    assert settings.max_batch_events == 1000
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert settings.var_dir == Path("var")


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BACKLOG", "5")
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("DATABASE_URL", "postgres://db/tower")

    settings = Settings()

    assert settings.max_backlog == 5
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.sqlalchemy_url == "postgresql+psycopg://db/tower"


def test_constructor_values_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")

    settings = Settings(port=8123, redis_url=None, database_url=None)

    assert settings.port == 8123
    assert settings.embedded is True


@pytest.mark.parametrize("port", ["0", "abc", "65536", "-1"])
def test_bad_port_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("PORT", port)

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert caught.value.errors()[0]["loc"] == ("port",)
