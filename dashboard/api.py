"""The JSON API under /api/v1 (contract section 3), as a Flask blueprint."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis
from flask import Blueprint, Flask, Response, g, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from dashboard.alerts import STATUSES, validate_comment
from dashboard.auth import INGEST_ROLES, OPERATOR_ROLES, READ_ROLES, TokenVerifier
from dashboard.events import InvalidEvent, parse_timestamp
from dashboard.ingest import Backpressure, BodyError, Ingestor, parse_body
from dashboard.modes import AuditQuery, check_site_id, validate_change
from dashboard.runtime import Runtime
from dashboard.stream import StoreUnavailable
from dashboard.telemetry import INGEST_SECONDS, REJECTED_BY_FIELD, STORE_ERRORS, rejection_field, store_of
from datasources.alerts import AlertConflict, AlertNotFound, acknowledge, list_alerts, resolve
from datasources.history import HistorySource, SiteStateReader
from datasources.live import LiveSource
from datasources.modes import ModeNotPropagated, audit, list_modes, set_mode

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
_RETRY_UNAVAILABLE_S = 5
_MAX_MODE_BODY_BYTES = 64 * 1024


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Return ``body`` serialized with orjson."""
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Return the API's error shape: {"error": message}."""
    return json_response({"error": message}, status, headers)


HEADLINE_METRICS = ("deliveries", "on_time_rate", "first_attempt_rate", "p95_dock_wait_s", "cost_per_delivery")
HEADLINE_STATE = ("backlog", "trucks_waiting", "backlog_per_active_picker", "stuck_count")
WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
_SITE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class MetricsQuery:
    """A validated metrics query: a scope and a range of whole minutes."""

    site_id: str | None
    start: datetime
    end: datetime
    window: str | None

    @classmethod
    def from_args(cls, args: Mapping[str, str], now: datetime) -> MetricsQuery:
        """Parse query parameters; raise ValueError naming what is wrong."""
        site_id = args.get("site_id") or None
        if site_id is not None and not _SITE_ID.fullmatch(site_id):
            raise ValueError(f"site_id must match ^[A-Za-z0-9_-]{{1,32}}$, got {site_id!r}")
        window = args.get("window")
        if window is not None:
            if "start" in args or "end" in args:
                raise ValueError("give either window or start and end, not both")
            if window not in WINDOWS:
                raise ValueError(f"window must be one of {', '.join(WINDOWS)}; got {window!r}")
            # The window ends with the current minute, so it holds every event up to now.
            end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            return cls(site_id, end - WINDOWS[window], end, window)
        if "start" not in args or "end" not in args:
            raise ValueError("give start and end (RFC 3339, whole minutes, UTC), or window (15m, 1h, 24h)")
        start, end = (_whole_minute(name, args[name]) for name in ("start", "end"))
        if start >= end:
            raise ValueError(f"start must be before end ({args['start']} >= {args['end']})")
        return cls(site_id, start, end, None)


def _whole_minute(name: str, text: str) -> datetime:
    try:
        moment = parse_timestamp(name, text)
    except InvalidEvent as error:
        raise ValueError(str(error)) from None
    if moment.second or moment.microsecond:
        raise ValueError(f"{name} must be a whole minute, got {text}")
    return moment.astimezone(UTC)


def create_api(runtime: Runtime) -> Blueprint:
    """Build the /api/v1 blueprint on the runtime's stores."""
    api = Blueprint("api_v1", __name__, url_prefix=API_PREFIX)
    verifier = TokenVerifier(runtime.engine)
    live = LiveSource(runtime.redis, runtime.keys, runtime.settings.live_retention_s)
    history = HistorySource(runtime.engine)
    state = SiteStateReader(runtime.engine, runtime.settings.stuck_minutes)
    ingestor = runtime.ingestor()
    settings = runtime.settings
    # Mode changes matter most when the pipeline is overloaded: their events
    # (one per operator action) skip the backlog bound that guards bulk ingest.
    mode_ingestor = Ingestor(runtime.redis, runtime.keys, max_backlog=2**62, dedup_ttl_s=settings.dedup_ttl_s)

    def requires(roles: frozenset[str]) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
            @functools.wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Response:
                header = request.headers.get("Authorization", "")
                scheme, _, token = header.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    return error_response(
                        401,
                        "missing bearer token: send 'Authorization: Bearer TOKEN' "
                        "(make one with 'python app.py token create --role ROLE --name NAME')",
                        {"WWW-Authenticate": "Bearer"},
                    )
                principal = verifier.verify(token.strip())
                if principal is None:
                    return error_response(401, "unknown token", {"WWW-Authenticate": "Bearer"})
                if principal.role not in roles:
                    return error_response(403, f"role {principal.role!r} may not call {request.method} {request.path}")
                g.principal = principal
                return view(*args, **kwargs)

            return guarded

        return decorate

    @api.post("/events")
    @requires(INGEST_ROLES)
    @INGEST_SECONDS.time()
    def post_events() -> Response:
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            return error_response(413, f"body is {length} bytes; the limit is {settings.max_body_bytes}")
        body = request.stream.read(settings.max_body_bytes + 1)
        try:
            items = parse_body(body, settings.max_body_bytes, settings.max_batch_events)
            result = ingestor.submit(items)
        except BodyError as error:
            if error.status == 400:
                REJECTED_BY_FIELD.labels(field="body").inc()
                runtime.redis.hincrby(runtime.keys.stats, "rejected", 1)
                return json_response(
                    {"accepted": 0, "duplicates": 0, "rejected": [{"index": 0, "id": None, "error": str(error)}]},
                    400,
                )
            return error_response(error.status, str(error))
        except Backpressure as error:
            return error_response(429, str(error), {"Retry-After": str(error.retry_after_s)})
        if result.rejected:
            _count_rejections(items, result.rejected)
        log.info(
            "events_posted",
            extra={
                "token": g.principal.name,
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": len(result.rejected),
            },
        )
        return json_response(result.as_dict(), 202 if result.taken else 400)

    @api.get("/metrics")
    @requires(READ_ROLES)
    def get_metrics() -> Response:
        now = datetime.now(UTC)
        try:
            query = MetricsQuery.from_args(request.args, now)
        except ValueError as error:
            return error_response(400, str(error))
        source = live if query.window else history
        figures = source.metrics(query.site_id, query.start, query.end, now)
        return json_response(
            {"site_id": query.site_id, "start": _rfc3339(query.start), "end": _rfc3339(query.end), **figures}
        )

    @api.get("/sites")
    @requires(READ_ROLES)
    def get_sites() -> Response:
        now = datetime.now(UTC)
        query = MetricsQuery.from_args({"window": "24h"}, now)
        listing = []
        for site_id in state.site_ids():
            site = state.state(site_id, now) or {}
            figures = live.metrics(site_id, query.start, query.end, now)
            listing.append(
                {
                    "site_id": site_id,
                    "last_event_at": site.get("last_event_at"),
                    "window": "24h",
                    **{name: figures[name] for name in HEADLINE_METRICS},
                    **{name: site.get(name) for name in HEADLINE_STATE},
                }
            )
        return json_response(listing)

    @api.get("/sites/<site_id>/state")
    @requires(READ_ROLES)
    def get_site_state(site_id: str) -> Response:
        site = state.state(site_id, datetime.now(UTC)) if _SITE_ID.fullmatch(site_id) else None
        if site is None:
            return error_response(404, f"no site {site_id!r} has sent any event")
        return json_response(site)

    @api.get("/orders/<order_id>/trail")
    @requires(READ_ROLES)
    def get_trail(order_id: str) -> Response:
        trail = state.trail(order_id) if 0 < len(order_id) <= 64 else None
        if trail is None:
            return error_response(404, f"no event of order {order_id!r} is in history")
        return json_response({"order_id": order_id, "events": trail})

    @api.get("/pipeline")
    @requires(READ_ROLES)
    def get_pipeline() -> Response:
        return json_response(live.pipeline().as_dict())

    @api.get("/modes")
    @requires(READ_ROLES)
    def get_modes() -> Response:
        return json_response([state.as_dict() for state in list_modes(runtime.engine)])

    @api.get("/modes/audit")
    @requires(READ_ROLES)
    def get_mode_audit() -> Response:
        try:
            query = AuditQuery.from_args(request.args)
        except ValueError as error:
            return error_response(400, str(error))
        return json_response([entry.as_dict() for entry in audit(runtime.engine, query)])

    @api.put("/modes/<mode>")
    @requires(OPERATOR_ROLES)
    def put_mode(mode: str) -> Response:
        body = request.stream.read(_MAX_MODE_BODY_BYTES + 1)
        if len(body) > _MAX_MODE_BODY_BYTES:
            return error_response(413, f"body is over {_MAX_MODE_BODY_BYTES} bytes")
        try:
            change = validate_change(mode, orjson.loads(body))
        except orjson.JSONDecodeError as error:
            return error_response(400, f"body: is not valid JSON: {error}")
        except ValueError as error:
            return error_response(400, str(error))
        try:
            state = set_mode(
                runtime.engine, runtime.redis, runtime.keys, mode_ingestor, change, g.principal.name, datetime.now(UTC)
            )
        except ModeNotPropagated as error:
            return error_response(503, str(error), {"Retry-After": str(_RETRY_UNAVAILABLE_S)})
        return json_response(state.as_dict())

    @api.get("/alerts")
    @requires(READ_ROLES)
    def get_alerts() -> Response:
        status = request.args.get("status") or None
        if status is not None and status not in STATUSES:
            return error_response(400, f"status: must be one of {', '.join(STATUSES)}; got {status!r}")
        site_id = request.args.get("site_id") or None
        try:
            if site_id is not None:
                check_site_id(site_id)
        except ValueError as error:
            return error_response(400, str(error))
        return json_response([alert.as_dict() for alert in list_alerts(runtime.engine, status, site_id)])

    def alert_change(alert_id: int, required: bool, change: Callable[[str | None], Any]) -> Response:
        body = request.stream.read(_MAX_MODE_BODY_BYTES + 1)
        if len(body) > _MAX_MODE_BODY_BYTES:
            return error_response(413, f"body is over {_MAX_MODE_BODY_BYTES} bytes")
        try:
            comment = validate_comment(orjson.loads(body) if body.strip() else None, required)
        except orjson.JSONDecodeError as error:
            return error_response(400, f"body: is not valid JSON: {error}")
        except ValueError as error:
            return error_response(400, str(error))
        try:
            alert = change(comment)
        except AlertNotFound as error:
            return error_response(404, str(error))
        except AlertConflict as error:
            return error_response(409, str(error))
        return json_response(alert.as_dict())

    @api.post("/alerts/<int:alert_id>/ack")
    @requires(OPERATOR_ROLES)
    def ack_alert(alert_id: int) -> Response:
        return alert_change(
            alert_id,
            True,
            lambda comment: acknowledge(runtime.engine, alert_id, g.principal.name, comment or "", datetime.now(UTC)),
        )

    @api.post("/alerts/<int:alert_id>/resolve")
    @requires(OPERATOR_ROLES)
    def resolve_alert(alert_id: int) -> Response:
        return alert_change(
            alert_id,
            False,
            lambda comment: resolve(runtime.engine, alert_id, g.principal.name, datetime.now(UTC), comment),
        )

    return api


def _count_rejections(items: list[Any], rejected: list[dict[str, Any]]) -> None:
    """Count rejections by field; log each at debug level with what identifies the event."""
    for rejection in rejected:
        field = rejection_field(rejection["error"])
        REJECTED_BY_FIELD.labels(field=field).inc()
        item = items[rejection["index"]]
        event = item if isinstance(item, dict) else {}
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        log.debug(
            "event_rejected",
            extra={
                "index": rejection["index"],
                "event_id": rejection["id"],
                "source": event.get("source") if isinstance(event.get("source"), str) else None,
                "site_id": data.get("site_id") if isinstance(data.get("site_id"), str) else None,
                "field": field,
                "error": rejection["error"],
            },
        )


def install_error_handlers(server: Flask) -> None:
    """Answer API errors as JSON, and never a bare 500 for a store outage."""

    def is_api() -> bool:
        return request.path.startswith(API_PREFIX)

    @server.before_request
    def unknown_api_path() -> Response | None:
        # Dash's catch-all page route would answer any path with its HTML.
        if is_api() and request.blueprint != "api_v1":
            return error_response(404, f"no API call {request.method} {request.path}")
        return None

    @server.errorhandler(StoreUnavailable)
    def store_unavailable(error: StoreUnavailable) -> Response:
        STORE_ERRORS.labels(store=store_of(error)).inc()
        log.warning("store_unavailable", extra={"path": request.path, "error": str(error)})
        return error_response(
            503, f"{error}; nothing was taken, retry shortly", {"Retry-After": str(_RETRY_UNAVAILABLE_S)}
        )

    @server.errorhandler(redis.RedisError)
    def redis_unavailable(error: redis.RedisError) -> Response:
        return store_unavailable(StoreUnavailable(f"Redis: {error}"))

    @server.errorhandler(sa_exc.OperationalError)
    def database_unavailable(error: sa_exc.OperationalError) -> Response:
        return store_unavailable(StoreUnavailable(f"database: {str(error.orig).splitlines()[0]}"))

    @server.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | HTTPException:
        if not is_api():
            return error
        return error_response(error.code or 500, error.description or error.name)
