"""Observability of the tower itself: GET /metrics (Prometheus), /healthz and /readyz.

None of them takes a token: they are for the internal network (a load
balancer, Prometheus), so do not route them from the outside.

/metrics joins two sources. The pipeline's counters and gauges are read from
Redis at scrape time (``PipelineCollector``): every web process reports the
same figures, whichever one Prometheus reaches. Latency histograms and the
other per-process metrics (``dashboard.telemetry``) come from this process,
or from every process under ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Flask, Response, g, request
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import exc as sa_exc

from dashboard.alerting import evaluations_key
from dashboard.api import json_response
from dashboard.db import current_revision, head_revision
from dashboard.runtime import Runtime
from dashboard.stream import Keys, StoreUnavailable, pipeline_status
from dashboard.telemetry import CALLBACK_SECONDS

_DASH_CALLBACK_PATH = "/_dash-update-component"


class PipelineCollector:
    """Report the pipeline's figures from Redis at scrape time; ``tower_redis_up`` 0 when Redis is down."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tower_redis_up", "Whether Redis answered this scrape (1) or not (0)")
        try:
            status = pipeline_status(self._client, self._keys)
            dead_waiting = int(self._client.xlen(self._keys.dead))
            evaluations = sum(int(v) for v in self._client.hvals(evaluations_key(self._keys)))
        except (StoreUnavailable, redis.RedisError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        counters = (
            ("tower_events_accepted", "Events accepted (new, appended to the stream)", status.accepted),
            ("tower_events_duplicates", "Events that repeated an accepted (source, id)", status.duplicates),
            ("tower_events_rejected", "Events rejected by validation", status.rejected),
            ("tower_events_processed", "Events committed to history and acknowledged", status.processed),
            ("tower_events_dead_lettered", "Stream entries moved to the dead-letter stream", status.dead_letters),
            ("tower_alert_evaluations", "Alert evaluations run, by every evaluator", evaluations),
        )
        for name, documentation, value in counters:
            yield CounterMetricFamily(name, documentation, value=value)
        age = status.oldest_unprocessed_age_s
        gauges = (
            ("tower_pipeline_backlog", "Accepted events not yet processed", status.backlog),
            (
                "tower_pipeline_oldest_unprocessed_age_seconds",
                "Age of the oldest accepted event not yet processed (0 when none)",
                0.0 if age is None else age,
            ),
            ("tower_pipeline_consumers", "Consumers in the ingest group", status.consumers),
            ("tower_dead_letters_waiting", "Entries in the dead-letter stream now", dead_waiting),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)


def _process_registry() -> CollectorRegistry:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


@functools.cache
def _head() -> str:
    return head_revision()


def readiness(runtime: Runtime) -> tuple[bool, dict[str, str]]:
    """Check Redis, the database and the schema; return (ready, what each check found)."""
    checks: dict[str, str] = {}
    try:
        runtime.redis.ping()
        checks["redis"] = "ok"
    except redis.RedisError as error:
        checks["redis"] = f"unreachable: {error}"
    try:
        current = current_revision(runtime.engine)
        checks["database"] = "ok"
        head = _head()
        checks["schema"] = (
            current
            if current == head
            else f"at {current or 'nothing'}, this code needs {head}: run 'python app.py migrate'"
        )
        schema_ok = current == head
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        checks["database"] = f"unreachable: {str(error.orig).splitlines()[0]}"
        checks["schema"] = "unknown (database unreachable)"
        schema_ok = False
    return checks["redis"] == "ok" and checks["database"] == "ok" and schema_ok, checks


def create_observability(runtime: Runtime) -> Blueprint:
    """Build the blueprint of /metrics, /healthz and /readyz (no token: internal network only)."""
    blueprint = Blueprint("observability", __name__)
    pipeline_registry = CollectorRegistry(auto_describe=False)
    pipeline_registry.register(PipelineCollector(runtime.redis, runtime.keys))

    @blueprint.get("/metrics")
    def metrics() -> Response:
        body = generate_latest(_process_registry()) + generate_latest(pipeline_registry)
        return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)

    @blueprint.get("/healthz")
    def healthz() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    @blueprint.get("/readyz")
    def readyz() -> Response:
        ready, checks = readiness(runtime)
        return json_response(checks, 200 if ready else 503)

    return blueprint


def install_observability(server: Flask, runtime: Runtime) -> None:
    """Add /metrics, /healthz and /readyz, and time every Dash callback."""
    server.register_blueprint(create_observability(runtime))

    @server.before_request
    def start_callback_timer() -> None:
        if request.path.endswith(_DASH_CALLBACK_PATH):
            g.callback_started = time.perf_counter()

    @server.teardown_request
    def observe_callback(_error: BaseException | None) -> None:
        # Teardown runs for failed callbacks too, so a slow error is timed as well.
        started = g.pop("callback_started", None)
        if started is not None:
            CALLBACK_SECONDS.observe(time.perf_counter() - started)
