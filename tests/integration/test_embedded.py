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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from tests.helpers import GOLDEN, golden_events
from tests.metrics_assert import mismatches

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Demo:
    base: str
    headers: dict[str, str]
    folder: Path

    def log(self) -> str:
        return (self.folder / "demo.log").read_text()[-3000:]


@contextmanager
def embedded_demo(folder: Path, role: str, **settings: str) -> Iterator[Demo]:
    """Run `python app.py` with no store URLs in ``folder``; yield it once it answers, with a token."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DEMO_FEED")}
    env.update(PORT=str(free_port()), **settings)
    demo = Demo(f"http://127.0.0.1:{env['PORT']}", {}, folder)
    with (folder / "demo.log").open("w") as log_file:
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=folder, env=env, stderr=log_file)
        try:
            token = subprocess.run(
                [sys.executable, str(ROOT / "app.py"), "token", "create", "--role", role, "--name", "newcomer"],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.splitlines()[-1]
            demo.headers["Authorization"] = f"Bearer {token}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{demo.base}/", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, demo.log()
                time.sleep(0.2)
            yield demo
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_embedded_demo_ingests_the_golden_log_into_sqlite(tmp_path):
    with embedded_demo(tmp_path, "admin", DEMO_FEED="0") as demo:  # no feed: exact counts
        events = golden_events()
        for start in range(0, len(events), 500):
            response = requests.post(
                f"{demo.base}/api/v1/events", json=events[start : start + 500], headers=demo.headers, timeout=30
            )
            assert response.status_code == 202, response.text
        unique = json.loads((GOLDEN / "expected_metrics.json").read_text())["unique_events"]
        deadline = time.monotonic() + 30
        while True:
            pipeline = requests.get(f"{demo.base}/api/v1/pipeline", headers=demo.headers, timeout=5).json()
            if pipeline["backlog"] == 0 and pipeline["processed"] == unique:
                break
            assert time.monotonic() < deadline, pipeline
            time.sleep(0.2)
        assert pipeline["duplicates"] == len(events) - unique
        assert pipeline["consumers"] == 1
        with sqlite3.connect(tmp_path / "var" / "tower.db") as db:
            assert db.execute("SELECT count(*) FROM events").fetchone()[0] == unique
            assert db.execute("SELECT count(DISTINCT source || '|' || id) FROM events").fetchone()[0] == unique
        failures = []
        for query in json.loads((GOLDEN / "expected_metrics.json").read_text())["queries"]:
            params = {key: query[key] for key in ("start", "end", "site_id") if query[key] is not None}
            body = requests.get(f"{demo.base}/api/v1/metrics", params=params, headers=demo.headers, timeout=5).json()
            failures += [
                f"{query['site_id']} {query['start']}: {problem}" for problem in mismatches(query["expected"], body)
            ]
        assert failures == []  # SQLite's history answers as PostgreSQL's, folded or not
        layout = requests.get(f"{demo.base}/_dash-layout", timeout=5)
        assert layout.status_code == 200


def test_embedded_demo_shows_a_living_network_within_seconds(tmp_path):
    with embedded_demo(tmp_path, "viewer", DEMO_SITES="2") as demo:
        deadline = time.monotonic() + 90
        while True:
            sites = requests.get(f"{demo.base}/api/v1/sites", headers=demo.headers, timeout=5).json()
            backlog = requests.get(f"{demo.base}/api/v1/pipeline", headers=demo.headers, timeout=5).json()["backlog"]
            recent = f"{datetime.now(UTC) - timedelta(minutes=10):%Y-%m-%dT%H:%M}"
            if len(sites) == 2 and all(site["last_event_at"] > recent for site in sites) and backlog == 0:
                break  # the day of history is in
            assert time.monotonic() < deadline, demo.log()
            time.sleep(1)
        day = requests.get(f"{demo.base}/api/v1/metrics?window=24h", headers=demo.headers, timeout=5).json()
        assert 0.5 < day["on_time_rate"] < 1 and 0.7 < day["first_attempt_rate"] < 1
        assert day["deliveries"] > 500
        assert None not in (day["p95_driver_idle_s"], day["p95_dock_wait_s"], day["p95_ready_to_truck_s"])
        assert 3 < day["cost_per_delivery"] < 40
