"""Degradation mode state: the SQL store is the truth, a Redis hash the cheap copy.

A change commits the new state and its audit row in one transaction, then
updates the Redis copy and publishes a ``mode.changed`` event through the
ingest path, so it is validated, de-duplicated and kept in history like any
other event.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dashboard.aggregates import aware
from dashboard.db import mode_audit, mode_states
from dashboard.ingest import Backpressure, Ingestor
from dashboard.modes import (
    CATALOGUE,
    NETWORK,
    AuditEntry,
    AuditQuery,
    ModeChange,
    ModeState,
    iso,
    mode_event,
    resolve_params,
)
from dashboard.stream import Keys, StoreUnavailable

__all__ = ["ModeNotPropagated", "StoreUnavailable", "audit", "current_modes", "list_modes", "modes_key", "set_mode"]

log = logging.getLogger(__name__)

# Set in the Redis copy once it holds every row of the SQL store; a copy
# without it (after a flush, or a failed update) is reloaded on the next read.
LOADED_FIELD = "_loaded"
# Two first changes of one mode and scope at once: one insert loses and is retried.
_FIRST_CHANGE_TRIES = 3

# Each copied state carries "version": the id of the audit row that made it,
# which grows in commit order. Two changes committed one after the other may
# reach Redis in the other order; the older one must not win.
# KEYS: the copy. ARGV: field, state JSON, version.
_COPY_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local version = tonumber(string.match(current, '"version":(%d+)'))
  if version and version >= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class ModeNotPropagated(StoreUnavailable):
    """The change is committed, but the Redis copy or the event stream could not be updated."""


def modes_key(keys: Keys) -> str:
    """Return the Redis hash holding the copy: field ``mode|site_id`` -> state JSON."""
    return f"{keys.prefix}:modes"


def _field(mode: str, site_id: str) -> str:
    return f"{mode}|{site_id}"


def _database_down(error: sa_exc.DBAPIError) -> StoreUnavailable:
    return StoreUnavailable(f"database: {str(error.orig).splitlines()[0]}")


def _copy_value(state: ModeState, version: int) -> bytes:
    return orjson.dumps({**state.as_dict(), "version": version})


def _state(row: Any) -> ModeState:
    return ModeState(row.mode, row.site_id, row.enabled, row.params, aware(row.changed_at), row.changed_by, row.reason)


# -- changing a mode --------------------------------------------------------------------


def set_mode(
    engine: sa.Engine,
    client: redis.Redis,
    keys: Keys,
    ingestor: Ingestor,
    change: ModeChange,
    actor: str,
    now: datetime,
) -> ModeState:
    """Apply a validated change for ``actor``: commit state and audit, then copy and publish it.

    Raises StoreUnavailable when the database cannot be reached (nothing
    changed), ModeNotPropagated when the change is committed but Redis could
    not take the copy or the event (repeating the same change publishes it).
    """
    now = now.astimezone(UTC)
    for attempt in range(1, _FIRST_CHANGE_TRIES + 1):
        try:
            with engine.begin() as connection:
                audit_id, previous, state = _commit(connection, change, actor, now)
            break
        except sa_exc.IntegrityError:
            if attempt == _FIRST_CHANGE_TRIES:
                raise
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
            raise _database_down(error) from error
    log.info(
        "mode_changed",
        extra={
            "mode": state.mode,
            "site_id": state.site_id,
            "enabled": state.enabled,
            "params": state.params,
            "previous_enabled": None if previous is None else previous.enabled,
            "previous_params": None if previous is None else previous.params,
            "actor": actor,
            "reason": state.reason,
            "audit_id": audit_id,
        },
    )
    _propagate(client, keys, ingestor, state, audit_id)
    return state


def _commit(
    connection: sa.Connection, change: ModeChange, actor: str, now: datetime
) -> tuple[int, ModeState | None, ModeState]:
    scope = (mode_states.c.mode == change.mode) & (mode_states.c.site_id == change.site_id)
    # The row lock (PostgreSQL; SQLite writes one at a time) makes concurrent
    # changes of one mode and scope queue, so each audits the true old values.
    row = connection.execute(sa.select(mode_states).where(scope).with_for_update()).first()
    previous = None if row is None else _state(row)
    params = resolve_params(CATALOGUE[change.mode], None if previous is None else previous.params, change.params)
    state = ModeState(change.mode, change.site_id, change.enabled, params, now, actor, change.reason)
    values = {
        "enabled": change.enabled,
        "params": params,
        "changed_at": now,
        "changed_by": actor,
        "reason": change.reason,
    }
    if previous is None:
        connection.execute(mode_states.insert().values(mode=change.mode, site_id=change.site_id, **values))
    else:
        connection.execute(mode_states.update().where(scope).values(**values))
    inserted = connection.execute(
        mode_audit.insert().values(
            mode=change.mode,
            site_id=change.site_id,
            old_enabled=None if previous is None else previous.enabled,
            new_enabled=state.enabled,
            # SQL NULL, not a JSON null, when there was no state before.
            old_params=sa.null() if previous is None else previous.params,
            new_params=params,
            changed_at=now,
            changed_by=actor,
            reason=state.reason,
        )
    )
    return int(inserted.inserted_primary_key[0]), previous, state


def _propagate(client: redis.Redis, keys: Keys, ingestor: Ingestor, state: ModeState, audit_id: int) -> None:
    try:
        client.register_script(_COPY_IF_NEWER)(
            keys=[modes_key(keys)], args=[_field(state.mode, state.site_id), _copy_value(state, audit_id), audit_id]
        )
        result = ingestor.submit([mode_event(state, audit_id)])
    except (redis.RedisError, StoreUnavailable, Backpressure) as error:
        # Without its marker the copy is reloaded from the database on the next read.
        with contextlib.suppress(redis.RedisError):
            client.delete(modes_key(keys))
        log.error("mode_not_propagated", extra={"audit_id": audit_id, "mode": state.mode, "error": str(error)})
        raise ModeNotPropagated(
            f"the change is recorded (audit {audit_id}) but could not be copied to Redis or published: {error}; "
            "repeat the same change to publish it"
        ) from error
    if result.rejected:  # a bug: the event is built from validated values
        log.error("mode_event_rejected", extra={"audit_id": audit_id, "rejected": result.rejected})


# -- reading modes ----------------------------------------------------------------------


def list_modes(engine: sa.Engine) -> list[ModeState]:
    """Return every mode and scope ever set, plus each catalogue mode network-wide at its defaults if never set.

    Sorted by catalogue order, the network scope first, then sites by id.
    """
    try:
        with engine.connect() as connection:
            stored = [_state(row) for row in connection.execute(sa.select(mode_states))]
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        raise _database_down(error) from error
    scopes = {(state.mode, state.site_id) for state in stored}
    defaults = [ModeState.default(mode) for name, mode in CATALOGUE.items() if (name, NETWORK) not in scopes]
    order = {name: index for index, name in enumerate(CATALOGUE)}
    return sorted(
        stored + defaults,
        key=lambda s: (order.get(s.mode, len(order)), s.mode, s.site_id != NETWORK, s.site_id),
    )


def audit(engine: sa.Engine, query: AuditQuery | None = None) -> list[AuditEntry]:
    """Return the audit trail, newest first, filtered by ``query``."""
    query = query or AuditQuery()
    statement = sa.select(mode_audit).order_by(mode_audit.c.id.desc()).limit(query.limit)
    if query.mode is not None:
        statement = statement.where(mode_audit.c.mode == query.mode)
    if query.site_id is not None:
        statement = statement.where(mode_audit.c.site_id == query.site_id)
    try:
        with engine.connect() as connection:
            rows = connection.execute(statement).all()
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        raise _database_down(error) from error
    return [
        AuditEntry(
            row.id,
            row.mode,
            row.site_id,
            row.old_enabled,
            row.new_enabled,
            row.old_params,
            row.new_params,
            aware(row.changed_at),
            row.changed_by,
            row.reason,
        )
        for row in rows
    ]


def current_modes(client: redis.Redis, keys: Keys, engine: sa.Engine) -> dict[tuple[str, str], ModeState]:
    """Return every set mode by (mode, site_id), from the Redis copy (one HGETALL).

    A copy that is missing or incomplete is reloaded from the database first.
    Use ``dashboard.modes.in_force`` to ask whether a mode applies at a site.
    """
    key = modes_key(keys)
    try:
        copy = client.hgetall(key)
        if LOADED_FIELD.encode() not in copy:
            _reload(client, key, engine)
            copy = client.hgetall(key)
    except redis.RedisError as error:
        raise StoreUnavailable(f"Redis: {error}") from error
    states = (ModeState.from_dict(orjson.loads(value)) for name, value in copy.items() if name != LOADED_FIELD.encode())
    return {(state.mode, state.site_id): state for state in states}


def _reload(client: redis.Redis, key: str, engine: sa.Engine) -> None:
    latest = (
        sa.select(sa.func.max(mode_audit.c.id))
        .where(mode_audit.c.mode == mode_states.c.mode, mode_audit.c.site_id == mode_states.c.site_id)
        .scalar_subquery()
    )
    try:
        with engine.connect() as connection:
            stored = [
                (_state(row), row.version)
                for row in connection.execute(sa.select(mode_states, latest.label("version")))
            ]
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        raise _database_down(error) from error
    # HSETNX: a change committed and copied while this read ran is newer than
    # what this read saw, and must not be overwritten.
    pipe = client.pipeline(transaction=True)
    for state, version in stored:
        pipe.hsetnx(key, _field(state.mode, state.site_id), _copy_value(state, version or 0))
    pipe.hset(key, LOADED_FIELD, iso(datetime.now(UTC)) or "")
    pipe.execute()
    log.info("mode_copy_reloaded", extra={"states": len(stored)})
