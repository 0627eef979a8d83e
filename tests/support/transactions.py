"""A savepoint of a test's transaction that a unit of work commits (or rolls back)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session


@contextmanager
def nested_transaction(session: Session) -> Iterator[Session]:
    """A savepoint of the test's transaction that a unit of work commits (or rolls back)."""
    nested = session.begin_nested()
    try:
        yield session
    except BaseException:
        nested.rollback()
        raise
    nested.commit()
