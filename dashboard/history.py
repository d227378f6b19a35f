"""Writing events to the history store, exactly once per (source, id).

On PostgreSQL a batch is COPied into a temporary staging table and moved
with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``; elsewhere (SQLite) a
multi-row ``INSERT ... ON CONFLICT DO NOTHING`` does the same, more slowly.
Either way a redelivered entry changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from dashboard.db import events
from dashboard.events import CORRELATION_FIELDS
from dashboard.stream import entry_ms


class UndecodableEntry(ValueError):
    """A stream entry that does not hold a usable event."""


@dataclass(slots=True)
class StoredEvent:
    """One stream entry, decoded into the columns of the events table.

    Not frozen, though never changed: a frozen dataclass sets each field
    through ``object.__setattr__``, and workers build one per event.
    """

    stream_id: str
    source: str
    id: str
    type: str
    site_id: str
    time: datetime
    received_at: datetime
    correlation: tuple[str | None, ...]
    stop_seq: int | None
    payload: bytes
    # The event's parsed data, so that aggregation does not parse the payload again.
    data: dict[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_entry(cls, entry_id: bytes, fields: dict[bytes, bytes]) -> StoredEvent:
        """Decode a stream entry; raise UndecodableEntry saying what is wrong."""
        payload = fields.get(b"e")
        if payload is None:
            raise UndecodableEntry("stream entry has no 'e' field")
        try:
            raw: Any = orjson.loads(payload)
            data = raw["data"]
            stream_id = entry_id.decode()
            stored = cls(
                stream_id=stream_id,
                source=raw["source"],
                id=raw["id"],
                type=raw["type"],
                site_id=data["site_id"],
                time=_utc(raw["time"]),
                received_at=_received_at(entry_ms(stream_id)),
                correlation=tuple(
                    [value if isinstance(value, str) else None for value in map(data.get, CORRELATION_FIELDS)]
                ),
                stop_seq=stop_seq_column(data),
                payload=payload,
                data=data,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise UndecodableEntry(f"entry is not a valid event: {error!r}") from None
        for name in ("source", "id", "type", "site_id"):
            if not isinstance(getattr(stored, name), str):
                raise UndecodableEntry(f"entry field {name} is not a string")
        return stored

    def row(self) -> dict[str, Any]:
        """Return the events-table row, with Python values."""
        return {
            "source": self.source,
            "id": self.id,
            "type": self.type,
            "site_id": self.site_id,
            "time": self.time,
            "received_at": self.received_at,
            "stream_id": self.stream_id,
            **dict(zip(CORRELATION_FIELDS, self.correlation, strict=True)),
            "stop_seq": self.stop_seq,
            "payload": orjson.loads(self.payload),
        }


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return moment.astimezone(UTC)


@functools.lru_cache(maxsize=1024)
def _received_at(ms: int) -> datetime:
    """Return the time of a stream entry's millisecond; the entries of one POST share it."""
    return datetime.fromtimestamp(ms / 1000, UTC)


STOP_SEQ_MAX = 2**31 - 1  # the column is a 4-byte integer


def stop_seq_column(data: dict[str, Any]) -> int | None:
    """Return the stop sequence for its column, or None when there is none it can hold.

    The contract bounds ``stop_seq`` only below. A value past the column's
    4-byte range stays in the payload; only the pair lookup by stop misses it.
    """
    value = data.get("stop_seq")
    if isinstance(value, int) and not isinstance(value, bool) and -STOP_SEQ_MAX - 1 <= value <= STOP_SEQ_MAX:
        return value
    return None


# The staged columns and their types for the binary COPY. The payload travels
# as text, exactly the bytes accepted, and becomes JSONB when it moves to
# ``events``; it comes last.
_COLUMN_TYPES = {
    "source": "text",
    "id": "text",
    "type": "text",
    "site_id": "text",
    "time": "timestamptz",
    "received_at": "timestamptz",
    "stream_id": "text",
    **dict.fromkeys(CORRELATION_FIELDS, "text"),
    "stop_seq": "int4",
    "payload": "text",
}
_COLUMNS = tuple(_COLUMN_TYPES)
_COPY_TYPES = tuple(_COLUMN_TYPES.values())
_STAGING = sa.text(
    "CREATE TEMPORARY TABLE IF NOT EXISTS events_staging ("
    + ", ".join(f"{name} {kind}" for name, kind in _COLUMN_TYPES.items())
    + ") ON COMMIT DELETE ROWS"
)
_COPY = f"COPY events_staging ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# Ordered by stream entry so that, for a key twice in one batch, the first
# accepted wins; the order also keeps concurrent batches from deadlocking.
_MOVE = (
    f"INSERT INTO events ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(_COLUMNS[:-1])}, payload::jsonb FROM events_staging "
    "ORDER BY split_part(stream_id, '-', 1)::bigint, split_part(stream_id, '-', 2)::bigint "
    "ON CONFLICT DO NOTHING RETURNING source, id"
)


def insert_events(connection: sa.Connection, batch: Sequence[StoredEvent]) -> set[tuple[str, str]]:
    """Insert the batch inside the caller's transaction; return the keys new to history.

    When a batch holds one key twice, the entry accepted first wins.
    """
    if not batch:
        return set()
    if connection.dialect.name == "postgresql":
        return _copy_events(connection, batch)
    statement = sqlite.insert(events).on_conflict_do_nothing().returning(events.c.source, events.c.id)
    rows = sorted((stored.row() for stored in batch), key=lambda row: _stream_order(row["stream_id"]))
    inserted: set[tuple[str, str]] = set()
    for row in rows:  # one by one: SQLite's RETURNING with executemany is not portable
        inserted.update((r.source, r.id) for r in connection.execute(statement, row))
    return inserted


def _stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


def _copy_events(connection: sa.Connection, batch: Sequence[StoredEvent]) -> set[tuple[str, str]]:
    connection.execute(_STAGING)
    driver_error = connection.dialect.loaded_dbapi.Error
    statement = _COPY
    try:
        # Binary COPY: psycopg formats each row in C, four times faster than text.
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(statement) as copy:
            copy.set_types(_COPY_TYPES)
            for stored in batch:
                copy.write_row(
                    (
                        stored.source,
                        stored.id,
                        stored.type,
                        stored.site_id,
                        stored.time,
                        stored.received_at,
                        stored.stream_id,
                        *stored.correlation,
                        stored.stop_seq,
                        stored.payload.decode(),
                    )
                )
        statement = _MOVE
        cursor.execute(_MOVE)
        return set(cursor.fetchall())
    except driver_error as error:
        # The raw cursor bypasses SQLAlchemy's wrapping: wrap its errors so the
        # worker tells an outage (OperationalError) from a refused row (DataError).
        raise sa.exc.DBAPIError.instance(statement, None, error, driver_error) from error
