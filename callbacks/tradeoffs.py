"""The trade-offs page: history over a date range, mode changes, before/after, CSV of the table."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dash import Dash, Input, Output, State, dcc, no_update

from callbacks.site import history_message
from dashboard.stream import StoreUnavailable
from dashboard.wallboard import format_value
from datasources.sources import Sources
from layouts import ids
from layouts import tradeoffs as trade_layout

HOURLY_UP_TO = timedelta(days=7)
COMPARED = (
    ("deliveries", "Deliveries"),
    ("on_time_rate", "On-time rate"),
    ("first_attempt_rate", "First-attempt rate"),
    ("cost_per_delivery", "Cost per delivery"),
    ("p95_driver_idle_s", "Driver idle p95"),
)


def preset_range(preset: str, today: date) -> tuple[str, str]:
    """Return the (first, last) days, inclusive, of a preset: today, or the last 7, 30 or 90 days."""
    days = 1 if preset == "today" else int(preset)
    return (today - timedelta(days=days - 1)).isoformat(), today.isoformat()


def query_range(first: str, last: str, now: datetime) -> tuple[datetime, datetime, str]:
    """Return [start, end) in whole minutes for inclusive days, cut at now, and the grain to chart it by."""
    start = datetime.fromisoformat(first[:10]).replace(tzinfo=UTC)
    end_of_last = datetime.fromisoformat(last[:10]).replace(tzinfo=UTC) + timedelta(days=1)
    end = min(end_of_last, now.replace(second=0, microsecond=0) + timedelta(minutes=1))
    if end <= start:
        end = start + timedelta(minutes=1)
    return start, end, "h" if end - start <= HOURLY_UP_TO else "d"


def table_rows(series: list[dict[str, Any]], scope: str) -> list[dict[str, Any]]:
    """Return the table (and CSV) rows: one per bucket, values rounded as shown."""
    rows = []
    for point in series:
        rows.append(
            {
                "bucket": point["bucket"],
                "scope": "network" if scope == "*" else scope,
                "attempts": point["attempts"],
                "deliveries": point["deliveries"],
                "on_time_rate": _round(point["on_time_rate"], 4),
                "first_attempt_rate": _round(point["first_attempt_rate"], 4),
                "cost_per_delivery": _round(point["cost_per_delivery"], 4),
                "labor_cost": _round(point["labor_cost"], 2),
                "p95_driver_idle_s": _round(point["p95_driver_idle_s"], 1),
            }
        )
    return rows


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Return rows as CSV with the table's columns, in the table's order; empty cells for nulls."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = [field for field, _ in trade_layout.TABLE_COLUMNS]
    writer.writerow(fields)
    for row in rows:
        writer.writerow(["" if row.get(field) is None else row[field] for field in fields])
    return out.getvalue()


def scatter_points(site_days: dict[str, list[dict[str, Any]]], scope: str) -> list[dict[str, Any]]:
    """Return one point per site-day with deliveries (only the chosen site's, unless the network is chosen)."""
    return [
        {
            "site_id": site,
            "day": point["bucket"][:10],
            "on_time_rate": point["on_time_rate"],
            "cost_per_delivery": point["cost_per_delivery"],
            "deliveries": point["deliveries"],
        }
        for site, points in sorted(site_days.items())
        if scope == "*" or site == scope
        for point in points
        if point["deliveries"] and point["on_time_rate"] is not None and point["cost_per_delivery"] is not None
    ]


def change_options(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the dropdown options for the range's mode changes, newest first."""
    return [
        {
            "label": f"{c['time'][:16].replace('T', ' ')} {c['mode'].replace('_', ' ')} "
            f"{'on' if c['enabled'] else 'off'} ({c['scope']}) by {c['actor']}",
            "value": index,
        }
        for index, c in reversed(list(enumerate(changes)))
    ]


def compare_rows(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, str]]:
    """Return the before/after rows: each metric's text before, after, and the change."""
    rows = []
    for metric, label in COMPARED:
        old, new = before.get(metric), after.get(metric)
        if old is None or new is None:
            delta = "—"
        elif metric.endswith("_rate"):
            delta = f"{(new - old) * 100:+.1f} pts"
        elif metric == "deliveries":
            delta = f"{new - old:+,}"
        else:
            delta = f"{new - old:+,.2f}"
        rows.append(
            {
                "metric": metric,
                "label": label,
                "before": format_value(metric, old),
                "after": format_value(metric, new),
                "delta": delta,
            }
        )
    return rows


def alert_marks(alerts: list[Any], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Return one mark per alert opening and resolution inside [start, end), oldest first (for the charts)."""
    marks = []
    for alert in alerts:
        scope = "network" if alert.site_id == "*" else alert.site_id
        base = {"rule": alert.rule, "scope": scope, "severity": alert.severity, "message": alert.message}
        if start <= alert.opened_at < end:
            marks.append({**base, "time": _iso(alert.opened_at), "kind": "opened", "by": None})
        if alert.resolved_at is not None and start <= alert.resolved_at < end:
            marks.append({**base, "time": _iso(alert.resolved_at), "kind": "resolved", "by": alert.resolved_by})
    return sorted(marks, key=lambda mark: mark["time"])


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def register(app: Dash, sources: Sources) -> None:
    """Register the trade-offs page's callbacks on ``app``."""
    period = sources.settings.history_refresh_s

    def view(scope: str, start: datetime, end: datetime, grain: str) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            now = datetime.now(UTC)
            site = None if scope == "*" else scope
            series = sources.history.series(site, start, end, grain, now)
            totals = sources.history.metrics(site, start, end, now)
            site_days = sources.history.site_buckets(start, end, "d", now)
            changes = sources.history.mode_changes(start, end, site)
            alerts = alert_marks(sources.alerts.between(start, end, site), start, end)
            return {
                "series": [{**point, "bucket": _iso(point["bucket"])} for point in series],
                "failure_reasons": totals["failure_reasons"],
                "site_days": {s: [{**p, "bucket": _iso(p["bucket"])} for p in ps] for s, ps in site_days.items()},
                "changes": [
                    {
                        "time": _iso(c["time"]),
                        "scope": "network" if c["site_id"] == "*" else c["site_id"],
                        "site_id": c["site_id"],
                        "mode": c["mode"],
                        "enabled": c["enabled"],
                        "actor": c["actor"],
                        "reason": c["reason"],
                    }
                    for c in changes
                ],
                "alerts": alerts,
                "as_of": now.strftime("%H:%M:%S UTC"),
            }

        return sources.cached("tradeoffs", period, compute, scope, _iso(start), _iso(end), grain)

    @app.callback(
        Output(ids.TRADE_DATES, "start_date"),
        Output(ids.TRADE_DATES, "end_date"),
        Input(ids.TRADE_PRESET, "value"),
    )
    def preset(value: str | None) -> tuple[str, str]:
        return preset_range(value or "7", datetime.now(UTC).date())

    @app.callback(
        Output(ids.TRADE_SERIES, "figure"),
        Output(ids.TRADE_FAILURES, "figure"),
        Output(ids.TRADE_SCATTER, "figure"),
        Output(ids.TRADE_TABLE, "rowData"),
        Output(ids.TRADE_CHANGE, "options"),
        Output(ids.TRADE_CHANGES, "data"),
        Output(ids.TRADE_AS_OF, "children"),
        Output(ids.TRADE_BANNER, "children"),
        Output(ids.TRADE_BANNER, "hidden"),
        Input(ids.TRADE_DATES, "start_date"),
        Input(ids.TRADE_DATES, "end_date"),
        Input(ids.TRADE_SITE, "value"),
        Input(ids.TRADE_INTERVAL, "n_intervals"),
    )
    def refresh(first: str | None, last: str | None, scope: str | None, _n: int | None) -> tuple[Any, ...]:
        if not first or not last:
            return (no_update,) * 7 + ("Choose a date range.", False)
        scope = scope or "*"
        start, end, grain = query_range(first, last, datetime.now(UTC))
        try:
            data = view(scope, start, end, grain)
        except StoreUnavailable:
            return (no_update,) * 7 + (history_message(sources), False)
        step = "hourly" if grain == "h" else "daily"
        return (
            trade_layout.series_figure(data["series"], data["changes"], data["alerts"]),
            trade_layout.failures_figure(data["failure_reasons"]),
            trade_layout.scatter_figure(scatter_points(data["site_days"], scope)),
            table_rows(data["series"], scope),
            change_options(data["changes"]),
            data["changes"],
            f"{_iso(start)[:16]} to {_iso(end)[:16]} UTC, {step} · data as of {data['as_of']}",
            "",
            True,
        )

    @app.callback(
        Output(ids.TRADE_COMPARE, "children"),
        Input(ids.TRADE_CHANGE, "value"),
        Input(ids.TRADE_SPAN, "value"),
        State(ids.TRADE_CHANGES, "data"),
    )
    def compare(index: int | None, span: str | None, changes: list[dict[str, Any]] | None) -> Any:
        if index is None or not changes or index >= len(changes):
            return trade_layout.compare_table([])
        change = changes[index]
        moment = datetime.fromisoformat(change["time"].replace("Z", "+00:00")).replace(second=0)
        hours = timedelta(hours=int(span or "4"))
        now = datetime.now(UTC)
        end = min(moment + hours, now.replace(second=0, microsecond=0) + timedelta(minutes=1))
        site = None if change["site_id"] == "*" else change["site_id"]
        try:
            before = sources.cached(
                "before",
                period,
                lambda: sources.history.metrics(site, moment - hours, moment, now),
                site,
                _iso(moment),
                span,
            )
            after = (
                sources.cached(
                    "after", period, lambda: sources.history.metrics(site, moment, end, now), site, _iso(moment), span
                )
                if end > moment
                else {}
            )
        except StoreUnavailable:
            return history_message(sources)
        return trade_layout.compare_table(compare_rows(before, after))

    @app.callback(
        Output(ids.TRADE_DOWNLOAD, "data"),
        Input(ids.TRADE_CSV, "n_clicks"),
        State(ids.TRADE_TABLE, "virtualRowData"),
        State(ids.TRADE_TABLE, "rowData"),
        prevent_initial_call=True,
    )
    def download(_n: int | None, shown: list[dict[str, Any]] | None, rows: list[dict[str, Any]] | None) -> Any:
        # virtualRowData is what the grid shows after its filters and sort.
        return dcc.send_string(to_csv(shown if shown is not None else rows or []), "tradeoffs.csv")
