"""Citizens' rating codes: the short code that comes with a case's (public) reference to the
person who reported it, and shows that a rating is theirs."""

from __future__ import annotations

import base64
import hashlib
import hmac

from sqlalchemy import text
from sqlalchemy.orm import Session

from layers.models import Case
from layers.workflow import Forbidden

_RATING_KEYS: dict[str, bytes] = {}  # per database: the key never changes once made


def rating_key(session: Session) -> bytes:
    """The key of citizens' rating codes (migration 0012), read once per database."""
    url = str(session.get_bind().engine.url)
    key = _RATING_KEYS.get(url)
    if key is None:
        value = session.scalar(text("SELECT value FROM server_secret WHERE name = 'rating'"))
        if value is None:
            raise RuntimeError("no rating key in server_secret: run the migrations")
        key = _RATING_KEYS[url] = bytes.fromhex(value)
    return key


def rating_code(key: bytes, ref: str) -> str:
    """The code a reporter quotes to rate a case: 8 characters, an HMAC of its reference
    (the reference is public; the code goes to the reporter only, by SMS or on the call)."""
    digest = hmac.new(key, ref.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:5]).decode()


def check_rating_code(session: Session, case: Case, code: str) -> None:
    """403 unless the code is the case's rating code."""
    want = rating_code(rating_key(session), case.ref)
    if not hmac.compare_digest(want, code.strip().upper()):
        raise Forbidden(f"the rating code does not match case {case.ref}: it comes with the "
                        "case's reference to the person who reported it")
