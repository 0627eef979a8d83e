"""API tokens: random bearer secrets stored only as SHA-256 hashes, each with a role."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers.models import ApiToken
from layers.workflow import DEPARTMENT, ROLES
from spatial.errors import GridopsError, InvalidInput


class Unauthorized(GridopsError):
    """No valid token where one is needed."""

    status = 401
    code = "unauthorized"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    """Revoke a token now."""
    tok = session.get(ApiToken, token_id)
    if tok is None:
        raise InvalidInput(f"no token {token_id}")
    tok.revoked_at = session.execute(select(func.now())).scalar_one()
    return tok
