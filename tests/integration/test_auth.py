"""Tokens and roles: 401 without a known token, 403 for a role that may not call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import make_event

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer lmt_unknown"}],
    ids=["no-header", "empty-bearer", "basic-auth", "unknown-token"],
)
def test_missing_or_unknown_token_is_401(client, runtime, headers):
    for response in (
        client.post("/api/v1/events", json=make_event(), headers=headers),
        client.get("/api/v1/pipeline", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "token" in response.get_json()["error"]
    assert runtime.redis.xlen(runtime.keys.stream) == 0


@pytest.mark.parametrize("role", ["viewer", "site_lead", "operator"])
def test_reading_roles_may_not_post_events(client, token, runtime, role):
    response = client.post("/api/v1/events", json=make_event(), headers={"Authorization": f"Bearer {token(role)}"})
    assert response.status_code == 403
    assert role in response.get_json()["error"]
    assert runtime.redis.xlen(runtime.keys.stream) == 0


def test_ingest_role_may_not_read(client, token):
    response = client.get("/api/v1/pipeline", headers={"Authorization": f"Bearer {token('ingest')}"})
    assert response.status_code == 403


@pytest.mark.parametrize("role", ["viewer", "site_lead", "operator", "admin"])
def test_every_other_role_reads_the_pipeline(client, token, role):
    response = client.get("/api/v1/pipeline", headers={"Authorization": f"Bearer {token(role)}"})
    assert response.status_code == 200
    assert response.get_json()["backlog"] == 0


def test_admin_may_post_events(client, token):
    response = client.post("/api/v1/events", json=make_event(), headers={"Authorization": f"Bearer {token('admin')}"})
    assert response.status_code == 202


def test_token_create_prints_the_token_last_and_stores_only_its_hash(settings, runtime, client):
    env = {"REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "app.py", "token", "create", "--role", "ingest", "--name", "wms-feed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("lmt_") and len(token) > 40
    with runtime.engine.connect() as connection:
        row = connection.execute(sa.text("SELECT name, role, token_sha256 FROM api_tokens")).one()
    assert (row.name, row.role) == ("wms-feed", "ingest")
    assert token not in row.token_sha256 and len(row.token_sha256) == 64
    response = client.post("/api/v1/events", json=make_event(), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202


def test_token_create_refuses_an_unknown_role():
    result = subprocess.run(
        [sys.executable, "app.py", "token", "create", "--role", "god", "--name", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid choice: 'god'" in result.stderr
