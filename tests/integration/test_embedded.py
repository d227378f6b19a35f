"""The embedded default: `python app.py` with no store URLs runs the whole path in one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from tests.helpers import GOLDEN, golden_events

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_embedded_demo_ingests_the_golden_log_into_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["PORT"] = str(free_port())
    env["DEMO_FEED"] = "0"  # exact counts: only the golden events
    base = f"http://127.0.0.1:{env['PORT']}"
    log_file = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=tmp_path, env=env, stderr=log_file)
    try:
        token = subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "token", "create", "--role", "admin", "--name", "newcomer"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()
            time.sleep(0.2)

        events = golden_events()
        for start in range(0, len(events), 500):
            response = requests.post(
                f"{base}/api/v1/events", json=events[start : start + 500], headers=headers, timeout=30
            )
            assert response.status_code == 202, response.text
        unique = json.loads((GOLDEN / "expected_metrics.json").read_text())["unique_events"]
        deadline = time.monotonic() + 30
        while True:
            pipeline = requests.get(f"{base}/api/v1/pipeline", headers=headers, timeout=5).json()
            if pipeline["backlog"] == 0 and pipeline["processed"] == unique:
                break
            assert time.monotonic() < deadline, pipeline
            time.sleep(0.2)
        assert pipeline["duplicates"] == len(events) - unique
        assert pipeline["consumers"] == 1
        with sqlite3.connect(tmp_path / "var" / "tower.db") as db:
            assert db.execute("SELECT count(*) FROM events").fetchone()[0] == unique
            assert db.execute("SELECT count(DISTINCT source || '|' || id) FROM events").fetchone()[0] == unique
        layout = requests.get(f"{base}/_dash-layout", timeout=5)
        assert layout.status_code == 200 and "Ingest pipeline" in layout.text
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            demo.kill()
        log_file.close()


def test_embedded_demo_shows_a_living_network_within_seconds(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DEMO_FEED")}
    env["PORT"] = str(free_port())
    env["DEMO_SITES"] = "2"
    base = f"http://127.0.0.1:{env['PORT']}"
    log_file = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=tmp_path, env=env, stderr=log_file)
    try:
        token = subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "token", "create", "--role", "viewer", "--name", "wall"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 90
        while True:
            try:
                sites = requests.get(f"{base}/api/v1/sites", headers=headers, timeout=5).json()
                backlog = requests.get(f"{base}/api/v1/pipeline", headers=headers, timeout=5).json()["backlog"]
                caught_up = [
                    site["last_event_at"] > f"{datetime.now(UTC) - timedelta(minutes=10):%Y-%m-%dT%H:%M}"
                    for site in sites
                ]
                if len(sites) == 2 and all(caught_up) and backlog == 0:  # the day of history is in
                    day = requests.get(f"{base}/api/v1/metrics?window=24h", headers=headers, timeout=5).json()
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-3000:]
            time.sleep(1)
        assert 0.5 < day["on_time_rate"] < 1 and 0.7 < day["first_attempt_rate"] < 1
        assert day["deliveries"] > 500
        assert None not in (day["p95_driver_idle_s"], day["p95_dock_wait_s"], day["p95_ready_to_truck_s"])
        assert 3 < day["cost_per_delivery"] < 40
        assert all(site["site_id"] for site in sites)
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            demo.kill()
        log_file.close()
