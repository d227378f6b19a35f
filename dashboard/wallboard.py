"""The wall screen's figures: one snapshot per refresh tick, shared by every screen.

``collect`` reads the data sources once and hands the answers to pure
builders (``scope_tiles``, ``open_alerts``, ``build_snapshot``...), which a
unit test can call without any store. ``SharedSnapshot`` memoizes a snapshot
per tick in the app's cache, so a thousand screens cost one computation.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dashboard.modes import NETWORK, ModeState
from dashboard.stream import PipelineStatus, StoreUnavailable

if TYPE_CHECKING:
    from flask_caching import Cache

    from datasources.sources import Sources

log = logging.getLogger(__name__)

WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
# The tiles of each row, left to right.
WALL_METRICS = (
    "on_time_rate",
    "first_attempt_rate",
    "p95_driver_idle_s",
    "dock_queue",
    "backlog_per_active_picker",
    "cost_per_delivery",
)
LABELS = {
    "on_time_rate": "On time",
    "first_attempt_rate": "First attempt",
    "p95_driver_idle_s": "Driver idle p95",
    "dock_queue": "Dock queue",
    "backlog_per_active_picker": "Backlog / picker",
    "cost_per_delivery": "Cost / delivery",
}
# Which thresholds colour a tile: the dock queue by its oldest wait.
THRESHOLD_OF = {"dock_queue": "dock_oldest_wait_s"}
# Sparklines: each point is the metric over the hour before it.
SPARK_WINDOW = timedelta(hours=1)
NO_VALUE = "—"
STATES = ("ok", "warn", "bad", "none")


# -- colours and text ---------------------------------------------------------------------


def tile_state(metric: str, value: float | None, thresholds: Mapping[str, Mapping[str, float]]) -> str:
    """Return "ok", "warn", "bad" (a level reached or passed) or "none" (no value) for a figure.

    Where a metric's ``bad`` level is below its ``warn`` level, lower values
    are worse (rates); otherwise higher values are worse (times, costs).
    """
    if value is None:
        return "none"
    levels = thresholds.get(THRESHOLD_OF.get(metric, metric))
    if not levels:
        return "ok"
    warn, bad = levels["warn"], levels["bad"]
    if bad < warn:
        return "bad" if value <= bad else "warn" if value <= warn else "ok"
    return "bad" if value >= bad else "warn" if value >= warn else "ok"


def format_duration(seconds: float | None) -> str:
    """Return a duration for reading at a glance: "45 s", "7.5 min", "42 min", "3.2 h"."""
    if seconds is None:
        return NO_VALUE
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_value(metric: str, value: float | None) -> str:
    """Return a figure as the wall screen shows it."""
    if value is None:
        return NO_VALUE
    if metric.endswith("_rate"):
        return f"{value * 100:.1f}%"
    if metric.endswith("_s"):
        return format_duration(value)
    if metric in ("cost_per_delivery", "labor_cost"):
        return f"{value:,.2f}"
    if metric == "backlog_per_active_picker":
        return f"{value:,.1f}"
    if metric == "dock_queue":
        return f"{value:,.0f}"
    return f"{value:,}"


def scope_tiles(
    figures: Mapping[str, Any] | None,
    state: Mapping[str, Any] | None,
    thresholds: Mapping[str, Mapping[str, float]],
) -> dict[str, dict[str, Any]]:
    """Return the tiles of one row from its live metrics and its current state (either may be missing)."""
    tiles = {}
    for metric in WALL_METRICS:
        sub = ""
        if metric == "dock_queue":
            value = None if state is None else state.get("trucks_waiting")
            oldest = None if state is None else state.get("oldest_wait_s")
            colour_by = oldest if value else (0.0 if value == 0 else None)
            sub = (
                f"oldest {format_duration(oldest)}" if oldest is not None else "no truck waiting" if value == 0 else ""
            )
            text = format_value(metric, value)
            status = tile_state(metric, colour_by, thresholds)
        else:
            source = state if metric == "backlog_per_active_picker" else figures
            value = None if source is None else source.get(metric)
            text = format_value(metric, value)
            status = tile_state(metric, value, thresholds)
            if metric == "backlog_per_active_picker" and state is not None and value is None:
                sub = f"backlog {state.get('backlog', 0):,}, no picker on shift"
            elif metric == "cost_per_delivery" and figures is not None:
                sub = f"{figures.get('deliveries', 0):,} deliveries"
            elif metric == "on_time_rate" and figures is not None and value is None:
                sub = "no delivery yet"
        tiles[metric] = {
            "metric": metric,
            "label": LABELS[metric],
            "value": value,
            "text": text,
            "sub": sub,
            "state": status,
        }
    return tiles


# -- current state, per site and for the network ----------------------------------------------


def state_summary(state: Mapping[str, Any]) -> dict[str, Any]:
    """Return the few current-state figures the wall screen shows of a site's state."""
    docks = state.get("docks", [])
    waits = [door["oldest_wait_s"] for door in docks if door.get("oldest_wait_s") is not None]
    return {
        "trucks_waiting": state.get("trucks_waiting", 0),
        "oldest_wait_s": max(waits) if waits else None,
        "backlog": state.get("backlog", 0),
        "pickers": state.get("active_workers", {}).get("picker", 0),
        "backlog_per_active_picker": state.get("backlog_per_active_picker"),
        "stuck_count": state.get("stuck_count", 0),
        "out_of_service": [
            [door["dock_id"], door.get("reason") or ""] for door in docks if door.get("status") == "out_of_service"
        ],
        "last_event_at": state.get("last_event_at"),
    }


def network_summary(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the network's current-state figures from its sites' summaries."""
    summaries = list(summaries)
    waits = [s["oldest_wait_s"] for s in summaries if s.get("oldest_wait_s") is not None]
    backlog = sum(s["backlog"] for s in summaries)
    pickers = sum(s["pickers"] for s in summaries)
    last = [s["last_event_at"] for s in summaries if s.get("last_event_at")]
    return {
        "trucks_waiting": sum(s["trucks_waiting"] for s in summaries),
        "oldest_wait_s": max(waits) if waits else None,
        "backlog": backlog,
        "pickers": pickers,
        "backlog_per_active_picker": backlog / pickers if pickers else None,
        "stuck_count": sum(s["stuck_count"] for s in summaries),
        "out_of_service": [],
        "last_event_at": max(last) if last else None,
    }


# -- alerts, modes, freshness -------------------------------------------------------------------


BAND_SEVERITY = {"critical": "bad", "warning": "warn", "info": "info"}
# Where each rule's alert is explained on the site page (element ids of layouts/site.py).
ALERT_ANCHORS = {"dock_queue": "site-doors", "labor_imbalance": "site-labor", "stuck_orders": "site-stuck"}
# The tiles whose trouble a site page panel explains.
TILE_ANCHORS = {"dock_queue": "site-doors", "backlog_per_active_picker": "site-labor"}


def alert_href(rule: str | None, scope: str) -> str:
    """Return the page (and anchor) that explains an alert: the site's panel, or the pipeline page network-wide."""
    if scope == NETWORK:
        return "/pipeline"
    anchor = ALERT_ANCHORS.get(rule or "")
    return f"/sites/{scope}" + (f"#{anchor}" if anchor else "")


def engine_alerts(active: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return the alert engine's open (then acknowledged) alerts for the band: worst first, newest first."""
    order = {"critical": 0, "warning": 1, "info": 2}
    ranked = sorted(active, key=lambda a: (a["status"] != "open", order.get(a["severity"], 3), -a["opened_at"]))
    return [
        {
            "severity": BAND_SEVERITY.get(alert["severity"], "warn"),
            "scope": alert["site_id"],
            "text": alert["message"] + (" (acknowledged)" if alert["status"] == "acknowledged" else ""),
            "href": alert_href(alert.get("rule"), alert["site_id"]),
        }
        for alert in ranked
    ]


def open_alerts(
    rows: list[dict[str, Any]],
    summaries: Mapping[str, Mapping[str, Any]],
    pipeline: Mapping[str, Any] | None,
    stale: bool,
) -> list[dict[str, Any]]:
    """Return the open alerts, worst first: bad tiles, pipeline trouble, doors out of service, stuck orders."""
    found: list[dict[str, Any]] = []
    if stale:
        found.append({"severity": "bad", "scope": NETWORK, "text": "figures are stale", "href": "/pipeline"})
    if pipeline is not None:
        if pipeline.get("dead_letters"):
            found.append(
                {
                    "severity": "bad",
                    "scope": NETWORK,
                    "text": f"{pipeline['dead_letters']:,} dead letters",
                    "href": "/pipeline",
                }
            )
        if pipeline.get("consumers") == 0:
            found.append({"severity": "bad", "scope": NETWORK, "text": "no ingest worker", "href": "/pipeline"})
    for row in rows:
        for tile in row["tiles"].values():
            if tile["state"] == "bad":
                found.append(_tile_alert("bad", row, tile))
    for scope, summary in summaries.items():
        if scope == NETWORK:
            continue
        for dock_id, reason in summary.get("out_of_service", []):
            found.append(
                {
                    "severity": "warn",
                    "scope": scope,
                    "text": f"{scope}: door {dock_id} out of service" + (f" ({reason})" if reason else ""),
                    "href": alert_href("dock_queue", scope),
                }
            )
        if summary.get("stuck_count"):
            found.append(
                {
                    "severity": "warn",
                    "scope": scope,
                    "text": f"{scope}: {summary['stuck_count']:,} stuck orders",
                    "href": alert_href("stuck_orders", scope),
                }
            )
    for row in rows:
        for tile in row["tiles"].values():
            if tile["state"] == "warn":
                found.append(_tile_alert("warn", row, tile))
    return found


def _tile_alert(severity: str, row: Mapping[str, Any], tile: Mapping[str, Any]) -> dict[str, Any]:
    scope = row["scope"]
    anchor = TILE_ANCHORS.get(tile["metric"])
    href = "/" if scope == NETWORK else f"/sites/{scope}" + (f"#{anchor}" if anchor else "")
    return {
        "severity": severity,
        "scope": scope,
        "text": f"{row['label']}: {tile['label'].lower()} {tile['text']}",
        "href": href,
    }


def active_modes(states: Mapping[tuple[str, str], ModeState]) -> list[dict[str, Any]]:
    """Return the enabled modes, network-wide first, then by site and name."""
    enabled = [state for state in states.values() if state.enabled]
    enabled.sort(key=lambda s: (s.site_id != NETWORK, s.site_id, s.mode))
    return [
        {
            "mode": state.mode,
            "site_id": state.site_id,
            "params": state.params,
            "changed_by": state.changed_by,
            "reason": state.reason,
            "changed_at": None if state.changed_at is None else state.changed_at.isoformat(),
        }
        for state in enabled
    ]


def freshness(pipeline: Mapping[str, Any] | None, last_event_at: str | None, stale_after_s: float) -> dict[str, Any]:
    """Return how fresh the figures are: the pipeline's lag, the last event time, and whether that is stale."""
    lag = None if pipeline is None else pipeline.get("oldest_unprocessed_age_s")
    stale = pipeline is None or (lag is not None and lag > stale_after_s)
    if pipeline is None:
        text = "pipeline unreachable"
    elif lag is None:
        text = "pipeline caught up"
    else:
        text = f"pipeline {format_duration(lag)} behind"
    return {"lag_s": lag, "stale": stale, "text": text, "last_event_at": last_event_at}


def focus_text(scope: str, summary: Mapping[str, Any] | None, modes: list[dict[str, Any]]) -> str:
    """Return one line about a site for the rotating focus."""
    if summary is None:
        return f"{scope}: no current state"
    parts = [
        f"{summary['trucks_waiting']:,} trucks waiting"
        + (f" (oldest {format_duration(summary['oldest_wait_s'])})" if summary.get("oldest_wait_s") else "")
    ]
    out = summary.get("out_of_service", [])
    if out:
        parts.append(", ".join(f"door {d} out of service" + (f" ({r})" if r else "") for d, r in out))
    parts.append(f"{summary['stuck_count']:,} stuck orders")
    parts.append(f"backlog {summary['backlog']:,} for {summary['pickers']:,} pickers")
    mine = [m["mode"] for m in modes if m["site_id"] in (scope, NETWORK)]
    if mine:
        parts.append("modes: " + ", ".join(mine))
    return f"{scope} — " + " · ".join(parts)


# -- the snapshot -----------------------------------------------------------------------------


def build_snapshot(
    now: datetime,
    window: str,
    site_ids: list[str],
    figures: Mapping[str, Mapping[str, Any] | None],
    summaries: Mapping[str, Mapping[str, Any]],
    modes: list[dict[str, Any]],
    pipeline: PipelineStatus | None,
    errors: list[str],
    thresholds: Mapping[str, Mapping[str, float]],
    stale_after_s: float,
    active_alerts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Return the wall screen's snapshot (plain JSON-able values) from what the sources answered."""
    pipeline_dict = None if pipeline is None else pipeline.as_dict()
    rows = []
    for scope in [NETWORK, *site_ids]:
        label = "Network" if scope == NETWORK else scope
        rows.append(
            {"scope": scope, "label": label, "tiles": scope_tiles(figures.get(scope), summaries.get(scope), thresholds)}
        )
    network = summaries.get(NETWORK) or {}
    fresh = freshness(pipeline_dict, network.get("last_event_at"), stale_after_s)
    stale = fresh["stale"] or bool(errors)
    return {
        "as_of": now.timestamp(),
        "as_of_text": now.strftime("%H:%M:%S UTC"),
        "window": window,
        "rows": rows,
        "pipeline": pipeline_dict,
        "freshness": {**fresh, "stale": stale},
        "modes": modes,
        "alerts": engine_alerts(active_alerts) + open_alerts(rows, summaries, pipeline_dict, fresh["stale"]),
        "errors": errors,
        "focus": {scope: focus_text(scope, summaries.get(scope), modes) for scope in site_ids},
    }


@dataclass
class LastGood:
    """The last figures each store gave, shown (and said to be stale) while that store is down.

    One per app, held by the wall screen's snapshot holder (``callbacks.wall.WallData``).
    """

    site_ids: list[str] = field(default_factory=list)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_at: datetime | None = None
    figures: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    live_at: datetime | None = None
    modes: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def stale_line(store: str, what: str, since: datetime | None, error: object) -> str:
    """Return the banner line for a store that is down: since when its figures are stale."""
    if since is None:
        return f"{store} unreachable: no {what} yet ({error})"
    return f"{store} unreachable: {what} stale since {since.strftime('%H:%M:%S')} UTC (last known figures shown)"


def history_unavailable(database: str, since: datetime | None) -> str:
    """Return the plain message of a history view while the database is down."""
    when = f" since {since.strftime('%H:%M:%S')} UTC" if since is not None else ""
    return f"History is unavailable ({database} unreachable{when}); live figures continue"


def database_name(database_url: str | None) -> str:
    """Return how the pages name the history store."""
    return "PostgreSQL" if database_url and not database_url.startswith("sqlite") else "the database"


def collect(sources: Sources, now: datetime, memory: LastGood | None = None) -> dict[str, Any]:
    """Read every source once and build the snapshot; a store that is down becomes an error line.

    With ``memory``, what a store that is down last gave is shown instead of
    nothing, and the line says since when it is stale.
    """
    settings = sources.settings
    memory = memory if memory is not None else LastGood()
    database = database_name(settings.database_url)
    database = database[:1].upper() + database[1:]
    errors: list[str] = []
    site_ids: list[str] = []
    summaries: dict[str, dict[str, Any]] = {}
    try:
        summaries = sources.state.summaries(now)
        site_ids = sorted(summaries)
        summaries[NETWORK] = network_summary(summaries.values())
        memory.site_ids, memory.summaries, memory.state_at = site_ids, summaries, now
    except StoreUnavailable as error:
        site_ids, summaries = list(memory.site_ids), dict(memory.summaries)
        errors.append(stale_line(database, "site state", memory.state_at, error))
    window = WINDOWS[settings.wall_window]
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    figures: dict[str, dict[str, Any] | None] = {}
    pipeline = None
    try:
        for scope in [NETWORK, *site_ids]:
            figures[scope] = sources.live.metrics(None if scope == NETWORK else scope, end - window, end, now)
        pipeline = sources.live.pipeline()
        memory.figures, memory.live_at = dict(figures), now
    except StoreUnavailable as error:
        figures = {scope: memory.figures.get(scope) for scope in [NETWORK, *site_ids]}
        errors.append(stale_line("Redis", "live figures", memory.live_at, error))
    if pipeline is not None and summaries and memory.state_at == now:
        try:
            sources.live.record_samples(
                now.replace(second=0, microsecond=0), _sampled(summaries), timedelta(hours=settings.sparkline_hours)
            )
        except StoreUnavailable as error:
            log.debug("wall_samples_skipped", extra={"error": str(error)})
    modes: list[dict[str, Any]] = memory.modes
    try:
        modes = active_modes(sources.modes.current())
        memory.modes = modes
    except StoreUnavailable as error:
        log.debug("wall_modes_unavailable", extra={"error": str(error)})
    active: list[dict[str, Any]] = memory.alerts
    try:
        active = [{**alert.as_dict(), "opened_at": alert.opened_at.timestamp()} for alert in sources.alerts.active()]
        memory.alerts = active
    except StoreUnavailable as error:
        log.debug("wall_alerts_unavailable", extra={"error": str(error)})
    return build_snapshot(
        now,
        settings.wall_window,
        site_ids,
        figures,
        summaries,
        modes,
        pipeline,
        errors,
        settings.tile_thresholds,
        settings.stale_after_s,
        active,
    )


def _sampled(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        scope: {name: summary[name] for name in ("trucks_waiting", "oldest_wait_s", "backlog_per_active_picker")}
        for scope, summary in summaries.items()
    }


# -- sparklines ------------------------------------------------------------------------------


def series_version(x: list[str], y: list[float | None]) -> str:
    """Return a short fingerprint of a series, so a screen asks only for the ones that changed."""
    return hashlib.blake2b(repr((x[-1:], y)).encode(), digest_size=6).hexdigest()


def build_series(
    live_points: Mapping[str, list[tuple[datetime, Mapping[str, Any]]]],
    samples: Mapping[str, list[Mapping[str, Any]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Return {scope: {metric: {"x", "y", "version"}}} for every tile's sparkline."""
    answer: dict[str, dict[str, dict[str, Any]]] = {}
    for scope in set(live_points) | set(samples):
        lines: dict[str, dict[str, Any]] = {}
        points = live_points.get(scope, [])
        recorded = samples.get(scope, [])
        for metric in WALL_METRICS:
            if metric in ("dock_queue", "backlog_per_active_picker"):
                name = "trucks_waiting" if metric == "dock_queue" else metric
                x = [sample["t"].strftime("%Y-%m-%dT%H:%M:%SZ") for sample in recorded]
                y = [sample.get(name) for sample in recorded]
            else:
                x = [moment.strftime("%Y-%m-%dT%H:%M:%SZ") for moment, _ in points]
                y = [figures.get(metric) for _, figures in points]
            lines[metric] = {"x": x, "y": y, "version": series_version(x, y)}
        answer[scope] = lines
    return answer


def collect_series(sources: Sources, now: datetime) -> dict[str, Any]:
    """Read the sparklines' history for the network and every site (one Redis round trip each kind)."""
    settings = sources.settings
    step = timedelta(minutes=settings.sparkline_step_minutes)
    points = max(2, int(timedelta(hours=settings.sparkline_hours) / step))
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    try:
        site_ids = sources.state.site_ids()
    except StoreUnavailable:
        site_ids = []
    try:
        window = SPARK_WINDOW if step <= SPARK_WINDOW else step
        window = step * max(1, round(window / step))
        live = sources.live.series([None, *site_ids], end, points, step, window, now)
        recorded = sources.live.samples([NETWORK, *site_ids], now - timedelta(hours=settings.sparkline_hours))
    except StoreUnavailable as error:
        return {"as_of": now.timestamp(), "series": {}, "error": str(error)}
    live_by_scope = {(NETWORK if scope is None else scope): values for scope, values in live.items()}
    return {"as_of": now.timestamp(), "series": build_series(live_by_scope, recorded), "error": None}


# -- one computation per tick ---------------------------------------------------------------


class SharedSnapshot:
    """Memoize a computation per tick of ``period_s`` in the app's cache, shared by every screen.

    In one process a lock makes concurrent requests wait for the one
    computing (or, with ``get(wait=False)``, take the previous tick's value);
    across processes (a shared Redis cache) an ``add`` lock does.
    """

    def __init__(self, cache: Cache, name: str, period_s: float, compute: Callable[[datetime], dict[str, Any]]) -> None:
        self._cache = cache
        self._name = name
        self._period_s = period_s
        self._compute = compute
        self._lock = threading.Lock()
        self._local: tuple[int, dict[str, Any]] | None = None  # this process's copy of the current tick
        self.computations = 0
        self.seconds_computing = 0.0

    def tick(self, now: float | None = None) -> int:
        """Return the number of the tick ``now`` (epoch seconds) falls in."""
        return int((time.time() if now is None else now) / self._period_s)

    def get(self, now: float | None = None, *, wait: bool = True) -> dict[str, Any]:
        """Return this tick's value, computing it only if no process has yet.

        With ``wait=False``, a caller that finds another thread of this
        process already getting the new tick gets the previous tick's value
        at once instead of queueing behind it: a screen's refresh then never
        waits for the tick's computation, and its figures are at most one
        tick older.
        """
        tick = self.tick(now)
        local = self._local
        if local is not None and local[0] == tick:
            return local[1]  # no cache round trip for the other screens of this tick
        if not wait and local is not None and local[0] == tick - 1:
            if not self._lock.acquire(blocking=False):
                return local[1]
        else:
            self._lock.acquire()
        try:
            return self._get_locked(tick)
        finally:
            self._lock.release()

    def _get_locked(self, tick: int) -> dict[str, Any]:
        local = self._local
        if local is not None and local[0] == tick:
            return local[1]  # another thread of this process got it meanwhile
        key = f"wall:{self._name}:{tick}"
        value = self._cache.get(key)
        if value is None and not self._cache.add(f"{key}:lock", 1, timeout=max(2, int(self._period_s * 2))):
            value = self._wait_for(key)  # another process is computing it
        if value is not None:
            self._local = (tick, value)
            return value
        started = time.perf_counter()
        value = self._compute(datetime.now(UTC))
        self._local = (tick, value)
        elapsed = time.perf_counter() - started
        self.computations += 1
        self.seconds_computing += elapsed
        log.debug("snapshot_computed", extra={"snapshot": self._name, "tick": tick, "seconds": round(elapsed, 4)})
        # Kept a little past its tick, so a slow screen still finds it.
        self._cache.set(key, value, timeout=max(2, int(self._period_s * 3)))
        return value

    def _wait_for(self, key: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + min(1.0, self._period_s)
        while time.monotonic() < deadline:
            time.sleep(0.02)
            value = self._cache.get(key)
            if value is not None:
                return value
        return None
