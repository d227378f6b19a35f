"""Per-process Prometheus metrics: latencies, rejections by field, store errors.

Defined once, at import, in prometheus-client's default registry (these are
declarations, not I/O). Pipeline-wide counts live in Redis and are reported
at scrape time by ``dashboard.observability.PipelineCollector`` instead, so
every process reports the same truth.

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory shared by the workers (before they start): each process then
writes its figures there and ``/metrics`` adds them up across processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from dashboard.events import DATA_FIELDS

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

INGEST_SECONDS = Histogram(
    "tower_ingest_request_seconds",
    "Time to answer POST /api/v1/events (validation, duplicate check, append), this process",
    buckets=_LATENCY_BUCKETS,
)
CALLBACK_SECONDS = Histogram(
    "tower_dash_callback_seconds",
    "Time to answer a Dash callback (/_dash-update-component), this process",
    buckets=_LATENCY_BUCKETS,
)
ALERT_EVALUATION_SECONDS = Histogram(
    "tower_alert_evaluation_seconds",
    "Time one alert evaluation took (snapshot, rules, writes), this process",
    buckets=_LATENCY_BUCKETS,
)
REJECTED_BY_FIELD = Counter(
    "tower_events_rejected_by_field",
    "Events rejected at the API, by the field the rejection names (other: a field outside the contract)",
    ["field"],
)
STORE_ERRORS = Counter(
    "tower_store_errors",
    "Requests or evaluations that found a store unavailable, by store (redis, database)",
    ["store"],
)

# The fields a rejection can name; anything else (a NUL in an unknown field, say) is "other",
# so a producer can never grow the label set.
KNOWN_FIELDS = frozenset(
    {"event", "body", "specversion", "id", "source", "type", "time", "subject", "data"}
    | {f"data.{name}" for fields in DATA_FIELDS.values() for name in fields}
    | {"data.site_id"}
)


def rejection_field(error: str) -> str:
    """Return the field a rejection message names ('data.attempt: must be ...' -> 'data.attempt')."""
    name = error.partition(":")[0]
    return name if name in KNOWN_FIELDS else "other"


def store_of(error: BaseException) -> str:
    """Return which store a StoreUnavailable is about."""
    return "redis" if str(error).lower().startswith("redis") else "database"
