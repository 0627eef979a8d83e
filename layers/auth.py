"""API tokens: random bearer secrets stored only as SHA-256 hashes, each with a role; a
per-worker cache of verified tokens so a request does not query the database for its caller
(a revocation reaches every worker by NOTIFY at once, and the cache's TTL bounds the rest)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from layers.models import ApiToken
from layers.workflow import DEPARTMENT, ROLES
from spatial.errors import GridopsError, InvalidInput

TOKENS_CHANNEL = "gridops_tokens"  # NOTIFY'd when a token is revoked: caches forget


class Unauthorized(GridopsError):
    """No valid token where one is needed."""

    status = 401
    code = "unauthorized"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """What a verified token says about its holder."""

    token_id: int
    name: str
    role: str
    department_code: str | None


def create_token(session: Session, name: str, role: str,
                 department: str | None = None) -> tuple[ApiToken, str]:
    """A new token; the secret is returned once and never stored."""
    if role not in ROLES:
        raise InvalidInput(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if (role == DEPARTMENT) != bool(department):
        raise InvalidInput("department: a department handler names its department "
                           "(and only handlers do)")
    secret = "gro_" + secrets.token_urlsafe(32)
    tok = ApiToken(name=name, role=role, department_code=department, token_hash=_hash(secret))
    session.add(tok)
    session.flush()
    return tok, secret


def verify(session: Session, secret: str) -> ApiToken:
    """The live token for a secret; 401 otherwise."""
    tok = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(secret),
                                                ApiToken.revoked_at.is_(None)))
    if tok is None:
        raise Unauthorized("the token is unknown or revoked")
    return tok


def revoke(session: Session, token_id: int) -> ApiToken:
    """Revoke a token now; every server's token cache forgets it when this commits."""
    tok = session.get(ApiToken, token_id)
    if tok is None:
        raise InvalidInput(f"no token {token_id}")
    tok.revoked_at = session.execute(select(func.now())).scalar_one()
    session.execute(text("SELECT pg_notify(:ch, '')"), {"ch": TOKENS_CHANNEL})
    return tok


class TokenCache:
    """Verified tokens of one worker, by hash, for ttl_s seconds (0 = always ask the
    database). Only live tokens are kept (an unknown secret asks again each time); clear()
    runs on the NOTIFY a revocation sends, so the TTL matters only for a token revoked
    behind gridops' back (straight in SQL) or while the worker's listener reconnects."""

    MAX_ENTRIES = 10_000

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]],
                 ttl_s: float) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._known: dict[str, tuple[Caller, float]] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str) -> Caller | None:
        """The caller if this worker verified the secret less than ttl_s ago."""
        hit = self._known.get(_hash(secret))
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def verify(self, secret: str) -> Caller:
        """The caller of a live token (from the database, then remembered); 401 otherwise."""
        key = _hash(secret)
        with self._sessions() as session:
            tok = verify(session, secret)
            caller = Caller(tok.id, tok.name, tok.role, tok.department_code)
        if self._ttl > 0:
            with self._lock:
                if len(self._known) >= self.MAX_ENTRIES:
                    self._known.clear()
                self._known[key] = (caller, time.monotonic() + self._ttl)
        return caller

    def clear(self) -> None:
        """Forget every token (a revocation happened somewhere)."""
        with self._lock:
            self._known = {}
