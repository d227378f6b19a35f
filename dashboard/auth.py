"""API tokens and roles: only a SHA-256 of each token is ever stored."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from dashboard.db import api_tokens

ROLES = ("ingest", "viewer", "site_lead", "operator", "admin")
# Every role but ingest may read (contract section 3).
READ_ROLES = frozenset({"viewer", "site_lead", "operator", "admin"})
INGEST_ROLES = frozenset({"ingest", "admin"})
# Who may change degradation modes.
OPERATOR_ROLES = frozenset({"operator", "admin"})
TOKEN_PREFIX = "lmt_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name and role."""

    name: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: sa.Engine, role: str, name: str) -> str:
    """Store a new token's hash for ``name`` with ``role``; return the token."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not name or len(name) > 128:
        raise ValueError("name must be 1 to 128 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as connection:
        connection.execute(
            api_tokens.insert().values(name=name, role=role, token_sha256=_digest(token), created_at=datetime.now(UTC))
        )
    return token


class TokenVerifier:
    """Resolve bearer tokens to principals, caching answers for a few seconds.

    The cache keeps the ingest hot path off the database; a token created
    elsewhere is seen at once (misses are not cached).
    """

    def __init__(self, engine: sa.Engine, ttl_s: float = 30.0) -> None:
        self._engine = engine
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal | None:
        """Return the token's principal, or None when the token is unknown."""
        digest = _digest(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(api_tokens.c.name, api_tokens.c.role).where(api_tokens.c.token_sha256 == digest)
            ).first()
        if row is None:
            return None
        principal = Principal(row.name, row.role)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl_s, principal)
        return principal
