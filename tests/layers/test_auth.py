"""Tokens: stored hashed, verified once per worker and then cached for a while; a
revocation empties the cache (the server does it on NOTIFY)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from layers.auth import TokenCache, Unauthorized, create_token, revoke
from layers.models import ApiToken


def _cache(session: Session, ttl_s: float) -> tuple[TokenCache, list[int]]:
    asked = [0]

    @contextmanager
    def sessions() -> Iterator[Session]:
        asked[0] += 1
        yield session

    return TokenCache(sessions, ttl_s), asked


def test_a_token_is_asked_for_once_then_cached(session: Session) -> None:
    tok, secret = create_token(session, "handler", "department", "CGZF")
    cache, asked = _cache(session, ttl_s=30)
    assert cache.cached(secret) is None
    who = cache.verify(secret)
    assert (who.name, who.role, who.department_code) == ("handler", "department", "CGZF")
    assert cache.cached(secret) == who and asked == [1]
    # only the hash is stored; the cache is keyed by it too
    stored = session.scalar(select(ApiToken.token_hash).where(ApiToken.id == tok.id))
    assert stored is not None and secret not in stored and len(stored) == 64
    revoke(session, tok.id)
    assert cache.cached(secret) == who  # until the NOTIFY arrives...
    cache.clear()  # ...which the server's listener turns into this
    assert cache.cached(secret) is None
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        cache.verify(secret)


def test_unknown_secrets_are_never_cached_and_the_ttl_ends(session: Session) -> None:
    _, secret = create_token(session, "patrol", "patrol")
    cache, asked = _cache(session, ttl_s=0.2)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            cache.verify("gro_not-a-token")
    assert asked == [3] and cache.cached("gro_not-a-token") is None
    cache.verify(secret)
    assert cache.cached(secret) is not None
    time.sleep(0.3)
    assert cache.cached(secret) is None  # asked again after the TTL
    off, asked = _cache(session, ttl_s=0)
    off.verify(secret)
    off.verify(secret)
    assert off.cached(secret) is None and asked == [2]
