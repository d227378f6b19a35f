"""Alerts in the history store: the lifecycle's writes and the API's reads, as plain domain objects."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dashboard.aggregates import aware
from dashboard.alerts import Condition, Episode, Key, OpenAlert, Plan
from dashboard.db import alert_conditions, alerts
from dashboard.modes import iso
from dashboard.stream import StoreUnavailable
from datasources.breaker import PASS_THROUGH, CircuitBreaker, PassThrough

__all__ = [
    "AUTO",
    "Alert",
    "AlertConflict",
    "AlertNotFound",
    "StoreUnavailable",
    "acknowledge",
    "alerts_between",
    "apply_plan",
    "get_alert",
    "list_alerts",
    "resolve",
]

log = logging.getLogger(__name__)
AUTO = "auto"  # resolved_by of an alert its evaluator resolved
MAX_LIST = 1000


class AlertNotFound(LookupError):
    """No alert has this id."""


class AlertConflict(RuntimeError):
    """The alert's status does not allow the change (it is resolved)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert and where it is in its lifecycle."""

    id: int
    rule: str
    site_id: str
    severity: str
    status: str
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    comment: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    message: str
    suggestion: str | None
    last_true_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """Return the API's JSON shape."""
        return {
            "id": self.id,
            "rule": self.rule,
            "site_id": self.site_id,
            "severity": self.severity,
            "status": self.status,
            "opened_at": iso(self.opened_at),
            "acknowledged_by": self.acknowledged_by,
            "comment": self.comment,
            "resolved_at": iso(self.resolved_at),
            "message": self.message,
            "suggestion": self.suggestion,
        }


def _optional(moment: datetime | None) -> datetime | None:
    return None if moment is None else aware(moment)


def _alert(row: Any) -> Alert:
    return Alert(
        row.id,
        row.rule,
        row.site_id,
        row.severity,
        row.status,
        aware(row.opened_at),
        _optional(row.acknowledged_at),
        row.acknowledged_by,
        row.comment,
        _optional(row.resolved_at),
        row.resolved_by,
        row.message,
        row.suggestion,
        aware(row.last_true_at),
    )


def _database_down(error: sa_exc.DBAPIError) -> StoreUnavailable:
    return StoreUnavailable(f"database: {str(error.orig).splitlines()[0]}")


def _read(engine: sa.Engine, statement: sa.Select) -> list[Alert]:
    try:
        with engine.connect() as connection:
            return [_alert(row) for row in connection.execute(statement)]
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        raise _database_down(error) from error


def list_alerts(
    engine: sa.Engine, status: str | None = None, site_id: str | None = None, limit: int = MAX_LIST
) -> list[Alert]:
    """Return alerts, newest first, with the given status and scope."""
    statement = sa.select(alerts).order_by(alerts.c.opened_at.desc(), alerts.c.id.desc()).limit(limit)
    if status is not None:
        statement = statement.where(alerts.c.status == status)
    if site_id is not None:
        statement = statement.where(alerts.c.site_id == site_id)
    return _read(engine, statement)


def alerts_between(engine: sa.Engine, start: datetime, end: datetime, site_id: str | None = None) -> list[Alert]:
    """Return the alerts opened or resolved in [start, end), oldest first (for chart annotations).

    ``site_id`` None gives every scope; a site gives its alerts and the network-wide ones.
    """
    statement = (
        sa.select(alerts)
        .where(
            sa.or_(
                sa.and_(alerts.c.opened_at >= start, alerts.c.opened_at < end),
                sa.and_(alerts.c.resolved_at >= start, alerts.c.resolved_at < end),
            )
        )
        .order_by(alerts.c.opened_at, alerts.c.id)
        .limit(MAX_LIST)
    )
    if site_id is not None:
        statement = statement.where(alerts.c.site_id.in_((site_id, "*")))
    return _read(engine, statement)


def get_alert(engine: sa.Engine, alert_id: int) -> Alert | None:
    """Return the alert with this id, or None."""
    found = _read(engine, sa.select(alerts).where(alerts.c.id == alert_id))
    return found[0] if found else None


def _change(engine: sa.Engine, alert_id: int, values: dict[str, Any]) -> Alert:
    try:
        with engine.begin() as connection:
            changed = connection.execute(
                alerts.update().where(alerts.c.id == alert_id, alerts.c.status != "resolved").values(**values)
            ).rowcount
            row = connection.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        raise _database_down(error) from error
    if row is None:
        raise AlertNotFound(f"no alert {alert_id}")
    if not changed:
        raise AlertConflict(f"alert {alert_id} is already resolved (at {iso(aware(row.resolved_at))})")
    return _alert(row)


def acknowledge(engine: sa.Engine, alert_id: int, actor: str, comment: str, now: datetime) -> Alert:
    """Acknowledge an alert that is not resolved (again: the newest who and comment win)."""
    alert = _change(
        engine,
        alert_id,
        {"status": "acknowledged", "acknowledged_at": now, "acknowledged_by": actor, "comment": comment},
    )
    log.info(
        "alert_acknowledged",
        extra={"alert_id": alert.id, "rule": alert.rule, "site_id": alert.site_id, "actor": actor, "comment": comment},
    )
    return alert


def resolve(engine: sa.Engine, alert_id: int, actor: str, now: datetime, comment: str | None = None) -> Alert:
    """Resolve an alert by hand; raise AlertConflict when it is already resolved."""
    values: dict[str, Any] = {"status": "resolved", "resolved_at": now, "resolved_by": actor}
    if comment is not None:
        values["comment"] = comment
    alert = _change(engine, alert_id, values)
    log.info(
        "alert_resolved",
        extra={"alert_id": alert.id, "rule": alert.rule, "site_id": alert.site_id, "actor": actor, "by": "hand"},
    )
    return alert


# -- the evaluator's side -----------------------------------------------------------------


def load_lifecycle(connection: sa.Connection) -> tuple[dict[Key, Episode], dict[Key, OpenAlert]]:
    """Return the condition episodes being timed and the alerts not yet resolved, by (rule, scope)."""
    episodes = {
        (row.rule, row.site_id): Episode(aware(row.since), row.alerted)
        for row in connection.execute(sa.select(alert_conditions))
    }
    open_alerts = {
        (row.rule, row.site_id): OpenAlert(row.id, aware(row.last_true_at))
        for row in connection.execute(
            sa.select(alerts.c.id, alerts.c.rule, alerts.c.site_id, alerts.c.last_true_at).where(
                alerts.c.status != "resolved"
            )
        )
    }
    return episodes, open_alerts


def apply_plan(connection: sa.Connection, plan: Plan, episodes: Mapping[Key, Episode] | None = None) -> list[int]:
    """Write one evaluation's plan in the caller's transaction; return the ids of the alerts it opened.

    ``episodes``, the episodes the plan started from, spares rewriting them when nothing changed.
    """
    now = plan.now
    if episodes is None or dict(episodes) != plan.episodes:
        _write_episodes(connection, plan.episodes)
    for alert_id, condition in plan.still_true:
        connection.execute(
            alerts.update()
            .where(alerts.c.id == alert_id, alerts.c.status != "resolved")
            .values(last_true_at=now, message=condition.message, suggestion=condition.suggestion)
        )
    if plan.resolve:
        connection.execute(
            alerts.update()
            .where(alerts.c.id.in_(plan.resolve), alerts.c.status != "resolved")
            .values(status="resolved", resolved_at=now, resolved_by=AUTO)
        )
    opened = [_insert(connection, condition, now) for condition in plan.open]
    return opened


def _write_episodes(connection: sa.Connection, episodes: Mapping[Key, Episode]) -> None:
    connection.execute(alert_conditions.delete())
    if episodes:
        connection.execute(
            alert_conditions.insert(),
            [
                {"rule": rule, "site_id": site_id, "since": episode.since, "alerted": episode.alerted}
                for (rule, site_id), episode in episodes.items()
            ],
        )


def _insert(connection: sa.Connection, condition: Condition, now: datetime) -> int:
    inserted = connection.execute(
        alerts.insert().values(
            rule=condition.rule,
            site_id=condition.site_id,
            severity=condition.severity,
            status="open",
            opened_at=now,
            message=condition.message,
            suggestion=condition.suggestion,
            last_true_at=now,
        )
    )
    return int(inserted.inserted_primary_key[0])


class AlertReader:
    """The alerts the pages show and acknowledge, through the database's breaker."""

    def __init__(self, engine: sa.Engine, breaker: CircuitBreaker | PassThrough = PASS_THROUGH) -> None:
        self._engine = engine
        self._breaker = breaker

    def active(self, site_id: str | None = None) -> list[Alert]:
        """Return the open and acknowledged alerts (of one site, when given), newest first."""
        statement = (
            sa.select(alerts)
            .where(alerts.c.status.in_(("open", "acknowledged")))
            .order_by(alerts.c.opened_at.desc(), alerts.c.id.desc())
            .limit(MAX_LIST)
        )
        if site_id is not None:
            statement = statement.where(alerts.c.site_id == site_id)
        return self._breaker.call(_read, self._engine, statement)

    def between(self, start: datetime, end: datetime, site_id: str | None = None) -> list[Alert]:
        """Return the alerts opened or resolved in [start, end), oldest first (chart annotations)."""
        return self._breaker.call(alerts_between, self._engine, start, end, site_id)

    def acknowledge(self, alert_id: int, actor: str, comment: str, now: datetime) -> Alert:
        """Acknowledge an alert for ``actor``; AlertNotFound, AlertConflict or StoreUnavailable otherwise."""
        return self._breaker.call(acknowledge, self._engine, alert_id, actor, comment, now)
