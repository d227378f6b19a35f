"""Accepting events: parse a body, validate each event, append to the stream.

The API and the simulator both go through ``Ingestor.submit``, so every
event on the stream passed the same validation and duplicate check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from dashboard.events import InvalidEvent, validate
from dashboard.stream import ACCEPT, Keys, StoreUnavailable


def utcnow() -> datetime:
    """Return the current time, timezone-aware."""
    return datetime.now(UTC)


class BodyError(ValueError):
    """The request body as a whole cannot be taken; ``status`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Backpressure(RuntimeError):
    """The backlog is at its bound; the caller should retry later."""

    def __init__(self, backlog: int, retry_after_s: int) -> None:
        super().__init__(
            f"the pipeline's backlog ({backlog} events) is at its bound; nothing was taken, retry in {retry_after_s} s"
        )
        self.backlog = backlog
        self.retry_after_s = retry_after_s


@dataclass
class SubmitResult:
    """What happened to each event of a body (the API's response body)."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def taken(self) -> bool:
        """Whether at least one event was accepted or was a duplicate."""
        return self.accepted + self.duplicates > 0

    def as_dict(self) -> dict[str, Any]:
        """Return the contract's response body."""
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def parse_body(body: bytes, max_bytes: int, max_events: int) -> list[Any]:
    """Return the events of a request body, a single event being a batch of one."""
    if len(body) > max_bytes:
        raise BodyError(413, f"body is {len(body)} bytes; the limit is {max_bytes}")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BodyError(400, f"body is not valid JSON: {error}") from None
    if isinstance(parsed, dict):
        return [parsed]
    if not isinstance(parsed, list):
        raise BodyError(400, f"body must be a JSON object (one event) or array (a batch), got {type(parsed).__name__}")
    if len(parsed) > max_events:
        raise BodyError(413, f"batch has {len(parsed)} events; the limit is {max_events}")
    return parsed


class Ingestor:
    """Validate events and append the new ones to the stream, atomically."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        max_backlog: int,
        dedup_ttl_s: int,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._client = client
        self._keys = keys
        self._max_backlog = max_backlog
        self._dedup_ttl_s = dedup_ttl_s
        self._clock = clock
        self._accept = client.register_script(ACCEPT)

    def submit(self, items: list[Any]) -> SubmitResult:
        """Take a batch: each event is accepted, a duplicate, or rejected.

        Raises Backpressure (nothing taken) when the backlog is at its bound,
        StoreUnavailable (nothing taken) when Redis cannot be reached.
        """
        now = self._clock()
        result = SubmitResult()
        keys: list[bytes] = []
        payloads: list[bytes] = []
        for index, item in enumerate(items):
            try:
                event = validate(item, now)
            except InvalidEvent as error:
                result.rejected.append({"index": index, "id": _id_of(item), "error": str(error)})
                continue
            payload = orjson.dumps(item)
            # PostgreSQL text cannot hold NUL: refuse it now rather than dead-letter it after a 202.
            field = _nul_field(item) if b"\\u0000" in payload else None
            if field is not None:
                result.rejected.append(
                    {"index": index, "id": _id_of(item), "error": f"{field}: must not contain the NUL character"}
                )
                continue
            keys.append(self._keys.seen(event.source, event.id))
            payloads.append(payload)
        try:
            flags = self._accept(
                keys=[self._keys.stream, self._keys.stats, self._keys.rate("accepted", int(now.timestamp())), *keys],
                args=[self._dedup_ttl_s, self._max_backlog, len(result.rejected), *payloads],
            )
        except redis.RedisError as error:
            raise StoreUnavailable(f"Redis: {error}") from error
        over_bound, backlog = flags[0], flags[1]
        if over_bound:
            raise Backpressure(backlog, retry_after_s=_retry_after(backlog, self._max_backlog))
        result.accepted = sum(flags[2:])
        result.duplicates = len(keys) - result.accepted
        return result


def _id_of(item: Any) -> str | None:
    event_id = item.get("id") if isinstance(item, dict) else None
    return event_id if isinstance(event_id, str) else None


def _nul_field(value: Any, path: str = "") -> str | None:
    """Return the dotted path of the first string (or key) holding a NUL character."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, inner in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return child
            found = _nul_field(inner, child)
            if found:
                return found
    if isinstance(value, list):
        for position, inner in enumerate(value):
            found = _nul_field(inner, f"{path}[{position}]")
            if found:
                return found
    return None


def _retry_after(backlog: int, bound: int) -> int:
    # Longer waits the further past the bound; a whole second at least.
    return max(1, min(60, math.ceil(5 * backlog / bound)))
