"""Degradation modes: the catalogue, typed parameters and validating a change (no I/O).

A mode is a switch operators flip when part of the network is in trouble,
for one site or for the whole network (``*``). The state lives in the
history store with an audit trail; ``datasources.modes`` reads and writes it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NETWORK = "*"
MODE_EVENT_SOURCE = "/tower/modes"
MAX_REASON_CHARS = 1000
MAX_AUDIT_LIMIT = 1000
BODY_FIELDS = ("site_id", "enabled", "reason", "params")
_SITE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def iso(moment: datetime | None) -> str | None:
    """Return ``moment`` as RFC 3339 UTC with microseconds, or None."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# -- the catalogue ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntParam:
    """An integer parameter of a mode, with inclusive bounds and a default."""

    name: str
    description: str
    default: int
    minimum: int
    maximum: int

    def check(self, value: Any) -> int:
        """Return ``value`` if it is an integer within bounds; raise ValueError naming the field."""
        if isinstance(value, bool) or not isinstance(value, int) or not self.minimum <= value <= self.maximum:
            raise ValueError(
                f"params.{self.name}: must be an integer from {self.minimum} to {self.maximum}, got {_describe(value)}"
            )
        return value


@dataclass(frozen=True, slots=True)
class Mode:
    """One degradation mode: its name, what it does, and its parameters."""

    name: str
    description: str
    params: tuple[IntParam, ...] = ()

    def defaults(self) -> dict[str, int]:
        """Return every parameter at its default."""
        return {param.name: param.default for param in self.params}

    def param(self, name: str) -> IntParam | None:
        """Return the parameter called ``name``, or None."""
        return next((param for param in self.params if param.name == name), None)


CATALOGUE: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode("pause_reslotting", "Stop moving orders to other delivery slots; every promise stays where it is."),
        Mode(
            "pause_bulk_adjustments",
            "Hold bulk changes (mass re-slotting, re-routing, cancellations) until the mode is lifted.",
        ),
        Mode(
            "conservative_promises",
            "Add a safety margin to the delivery windows promised to new orders.",
            (IntParam("extra_minutes", "minutes added to each new promise", 30, 0, 240),),
        ),
        Mode(
            "eta_cache_fallback",
            "Answer ETA requests from the last cached estimates instead of the live ETA service.",
        ),
        Mode(
            "admission_control",
            "Cap the number of new orders taken per hour; orders over the cap are refused or deferred.",
            (IntParam("max_orders_per_hour", "new orders taken per hour at most", 200, 1, 100_000),),
        ),
        Mode("priority_only", "Work only express orders through pick, pack and load; standard orders wait."),
    )
}


# -- a change and the resulting state ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModeChange:
    """A validated request to set a mode: ``params`` holds only the parameters given."""

    mode: str
    site_id: str
    enabled: bool
    reason: str
    params: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModeState:
    """A mode's state in one scope; ``changed_at`` is None for a never-set default."""

    mode: str
    site_id: str
    enabled: bool
    params: dict[str, Any]
    changed_at: datetime | None = None
    changed_by: str | None = None
    reason: str | None = None

    @classmethod
    def default(cls, mode: Mode, site_id: str = NETWORK) -> ModeState:
        """Return the never-set state of ``mode``: off, default parameters."""
        return cls(mode.name, site_id, False, mode.defaults())

    def as_dict(self) -> dict[str, Any]:
        """Return the API's JSON shape (also the Redis copy's)."""
        return {
            "mode": self.mode,
            "site_id": self.site_id,
            "enabled": self.enabled,
            "params": self.params,
            "changed_at": iso(self.changed_at),
            "changed_by": self.changed_by,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModeState:
        """Return the state ``as_dict`` described."""
        return cls(
            data["mode"],
            data["site_id"],
            data["enabled"],
            dict(data["params"]),
            _parse_iso(data["changed_at"]),
            data["changed_by"],
            data["reason"],
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change of a mode: who, when, why, and the values before and after."""

    id: int
    mode: str
    site_id: str
    old_enabled: bool | None
    new_enabled: bool
    old_params: dict[str, Any] | None
    new_params: dict[str, Any]
    changed_at: datetime
    changed_by: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Return the API's JSON shape; the old values are null for a first change."""
        return {
            "id": self.id,
            "mode": self.mode,
            "site_id": self.site_id,
            "old_enabled": self.old_enabled,
            "new_enabled": self.new_enabled,
            "old_params": self.old_params,
            "new_params": self.new_params,
            "changed_at": iso(self.changed_at),
            "changed_by": self.changed_by,
            "reason": self.reason,
        }


# -- validation -------------------------------------------------------------------------


def lookup(mode_name: str) -> Mode:
    """Return the catalogue's mode; raise ValueError naming it when unknown."""
    mode = CATALOGUE.get(mode_name)
    if mode is None:
        raise ValueError(f"mode: unknown mode {_describe(mode_name)}; choose one of {', '.join(CATALOGUE)}")
    return mode


def check_site_id(site_id: Any, field_name: str = "site_id") -> str:
    """Return ``site_id`` if it is ``*`` or a valid site id; raise ValueError naming the field."""
    if site_id != NETWORK and not (isinstance(site_id, str) and _SITE_ID.fullmatch(site_id)):
        raise ValueError(
            f"{field_name}: must be '*' (the whole network) or match ^[A-Za-z0-9_-]{{1,32}}$, got {_describe(site_id)}"
        )
    return site_id


def _check_params(mode: Mode, params: Any) -> dict[str, int]:
    if not isinstance(params, dict):
        raise ValueError(f"params: must be a JSON object, got {_describe(params)}")
    checked = {}
    for name, value in params.items():
        param = mode.param(name)
        if param is None:
            takes = ", ".join(p.name for p in mode.params) or "none"
            raise ValueError(f"params.{name}: unknown parameter of {mode.name} (it takes: {takes})")
        checked[name] = param.check(value)
    return checked


def validate_change(mode_name: str, body: Any) -> ModeChange:
    """Return the change a PUT body asks for; raise ValueError with a message naming the field."""
    mode = lookup(mode_name)
    if not isinstance(body, dict):
        raise ValueError(f"body: must be a JSON object, got {type(body).__name__}")
    for name in body:
        if name not in BODY_FIELDS:
            raise ValueError(f"{name}: unknown field; a change takes {', '.join(BODY_FIELDS)}")
    for name in ("site_id", "enabled", "reason"):
        if name not in body:
            raise ValueError(f"{name}: is required")
    site_id = check_site_id(body["site_id"])
    enabled = body["enabled"]
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled: must be true or false, got {_describe(enabled)}")
    reason = body["reason"]
    if not isinstance(reason, str):
        raise ValueError(f"reason: must be a string, got {_describe(reason)}")
    reason = reason.strip()
    if not reason:
        raise ValueError("reason: must not be empty; say why the mode changes")
    if "\x00" in reason:  # PostgreSQL text cannot hold it
        raise ValueError("reason: must not contain the NUL character")
    if len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"reason: must be at most {MAX_REASON_CHARS} characters, got {len(reason)}")
    params = _check_params(mode, body["params"]) if "params" in body else {}
    return ModeChange(mode.name, site_id, enabled, reason, params)


def resolve_params(mode: Mode, previous: Mapping[str, Any] | None, given: Mapping[str, int]) -> dict[str, int]:
    """Return the parameters after a change: the given ones over the previous ones over the defaults.

    A previous value the catalogue no longer accepts (a parameter removed or
    its bounds narrowed since) falls back to the default.
    """
    resolved = mode.defaults()
    for name, value in (previous or {}).items():
        param = mode.param(name)
        if param is not None:
            with contextlib.suppress(ValueError):
                resolved[name] = param.check(value)
    resolved.update(given)
    return resolved


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of the audit trail: newest first, at most ``limit`` entries."""

    mode: str | None = None
    site_id: str | None = None
    limit: int = 100

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> AuditQuery:
        """Parse query parameters; raise ValueError naming what is wrong."""
        mode = args.get("mode") or None
        if mode is not None:
            lookup(mode)
        site_id = args.get("site_id") or None
        if site_id is not None:
            check_site_id(site_id)
        text = args.get("limit", "100")
        if not text.isdigit() or not 1 <= int(text) <= MAX_AUDIT_LIMIT:
            raise ValueError(f"limit: must be an integer from 1 to {MAX_AUDIT_LIMIT}, got {_describe(text)}")
        return cls(mode, site_id, int(text))


# -- reading the state ------------------------------------------------------------------


def in_force(states: Mapping[tuple[str, str], ModeState], mode: str, site_id: str) -> ModeState | None:
    """Return the state that puts ``mode`` in force at ``site_id``, or None when it is off there.

    A mode is in force at a site when it is enabled for that site or for the
    whole network; the site's own state (and its parameters) wins.
    """
    for scope in (site_id, NETWORK):
        state = states.get((mode, scope))
        if state is not None and state.enabled:
            return state
    return None


def mode_event(state: ModeState, audit_id: int) -> dict[str, Any]:
    """Return the ``mode.changed`` CloudEvent announcing a committed change.

    Its id comes from the audit row, so publishing the same change twice is
    one event; the change time in it keeps the id unique should a rebuilt
    database number its audit rows from 1 again.
    """
    assert state.changed_at is not None and state.changed_by is not None
    changed_ms = int(state.changed_at.timestamp() * 1000)
    return {
        "specversion": "1.0",
        "id": f"mode-audit-{audit_id}-{changed_ms}",
        "source": MODE_EVENT_SOURCE,
        "type": "mode.changed",
        "time": iso(state.changed_at),
        "data": {
            "site_id": state.site_id,
            "mode": state.mode,
            "enabled": state.enabled,
            "actor": state.changed_by,
            "reason": state.reason,
            "params": state.params,
        },
    }
