"""Group commit at intake: reports stored together see each other (duplicates, idempotency
keys), a report that fails fails alone and nothing is stored twice, answers come only after
the commit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from layers import cases, grids, workflow
from layers.intake_writer import IntakeWriter
from layers.models import Case, CaseEvent
from layers.ownership import resolve_owner
from layers.ownership_store import load_snapshot
from layers.resolver import build_index
from layers.settings import Settings
from spatial import h3index
from tests.support.transactions import nested_transaction

P = (121.2277, 31.0322)
CENTRE = cases.Actor("test-centre", workflow.CENTRE)


@pytest.fixture()
def resolve(full_session: Session, settings: Settings) -> Any:
    """A report's resolution as the server makes it (index, chain, owner)."""
    gen = grids.active_generation(full_session)
    assert gen is not None
    idx = build_index(full_session, gen, settings)
    snap = load_snapshot(full_session, settings)

    def res(lon: float, lat: float, category: str) -> dict[str, Any]:
        g, cell = idx.lookup_one(lon, lat)
        chain = idx.chain(g) if g >= 0 else []
        return {"chain": chain, "h3": h3index.cell_str(cell), "generation": idx.generation,
                "nearest": None,
                "owner": resolve_owner(snap, lon, lat, category, chain, settings)}
    return res


def _report(resolve: Any, n: int, *, dx: float = 0.0, category: str = "E0501",
            key: str | None = None, name: str | None = "张三") -> cases.Intake:
    lon, lat = P[0] + dx, P[1]
    return cases.Intake("hotline_12345", category, lon, lat, "EPSG:4326", f"report {n}",
                        name, "13900000000", key, resolve(lon, lat, category))


def _held_writer(session: Session, settings: Settings) -> tuple[IntakeWriter,
                                                               threading.Event]:
    """A writer whose first transaction waits until released: what is submitted meanwhile
    is stored as one batch."""
    release = threading.Event()
    first = [True]

    @contextmanager
    def transactions() -> Iterator[Session]:
        if first[0]:
            first[0] = False
            assert release.wait(30)
        with nested_transaction(session) as s:
            yield s

    return IntakeWriter(transactions, settings), release


def _submit_all(writer: IntakeWriter, release: threading.Event,
                reports: list[cases.Intake]) -> list[Any]:
    async def go() -> list[Any]:
        tasks = [asyncio.ensure_future(writer.submit(r, CENTRE, private=True))
                 for r in reports]
        await asyncio.sleep(0.2)  # every report queued behind the held first one
        assert not any(t.done() for t in tasks)  # no answer before the commit
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)
    try:
        return asyncio.run(go())
    finally:
        writer.stop()


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Case)) or 0


def test_a_batch_sees_itself(full_session: Session, settings: Settings, resolve: Any) -> None:
    """Three reports of one spot in one batch: one case with three reporters; a retried
    request in the same batch: the first case again; other reports: cases of their own."""
    writer, release = _held_writer(full_session, settings)
    before = _count(full_session)
    reports = [_report(resolve, 0, dx=0.01),  # maybe alone in the first (held) batch
               _report(resolve, 1), _report(resolve, 2, dx=1e-4), _report(resolve, 3, dx=-1e-4),
               _report(resolve, 4, dx=0.004, key="k-1"), _report(resolve, 4, dx=0.004, key="k-1"),
               _report(resolve, 6, dx=0.006, category="E0101")]
    out = _submit_all(writer, release, reports)
    assert writer.batches <= 2 and writer.stored == 6  # the rest all in one
    assert (writer.replayed, writer.failed, writer.fallbacks) == (1, 0, 0)
    assert writer.largest >= 6 and writer.stats()["queued"] == 0
    views = [o[0] for o in out]
    created = [o[1] for o in out]
    assert created == [True, True, True, True, True, False, True]
    assert [v["status"] for v in views[1:4]] == ["collected", "merged", "merged"]
    first = full_session.scalar(select(Case).where(Case.ref == views[1]["ref"]))
    assert first is not None and first.reporters == 3
    # the original named by its reference, not its database id
    assert views[2]["duplicate_of"] == views[3]["duplicate_of"] == first.ref
    # as if one by one: each later than the one before, the original changed by the last
    assert views[1]["created_at"] < views[2]["created_at"] < views[3]["created_at"]
    assert first.updated_at == views[1]["updated_at"] == views[3]["created_at"]
    assert views[5]["ref"] == views[4]["ref"]  # same key: the first case, unchanged
    assert views[4]["reporter"]["name"] == "张三"  # the centre may see the reporter
    assert _count(full_session) == before + 6
    ev = full_session.scalars(select(CaseEvent.action).where(CaseEvent.case_id == first.id)
                              .order_by(CaseEvent.id)).all()
    assert ev == ["report", "reporter_added", "reporter_added"]


def test_a_failing_report_fails_alone(full_session: Session, settings: Settings,
                                      resolve: Any) -> None:
    """A report the database refuses (a name longer than the column) makes its batch roll
    back; the others are then stored one by one, each once, and only it gets the error."""
    writer, release = _held_writer(full_session, settings)
    before = _count(full_session)
    reports = [_report(resolve, 0, dx=0.01), _report(resolve, 1, dx=0.002),
               _report(resolve, 2, dx=0.004, name="名" * 300), _report(resolve, 3, dx=0.006),
               _report(resolve, 4, dx=0.002)]  # joins report 1 (again, after the rollback)
    out = _submit_all(writer, release, reports)
    assert isinstance(out[2], Exception) and "too long" in str(out[2])
    assert (writer.stored, writer.failed, writer.fallbacks) == (4, 1, 1)
    ok = [o for i, o in enumerate(out) if i != 2]
    assert all(isinstance(o, tuple) and o[1] for o in ok)
    assert [o[0]["status"] for o in ok] == ["collected", "collected", "collected", "merged"]
    assert _count(full_session) == before + 4  # nothing twice, nothing of the failed one
    refs = [o[0]["ref"] for o in ok]
    assert full_session.scalar(select(func.count()).select_from(Case).where(
        Case.ref.in_(refs))) == 4
    one = full_session.scalar(select(Case).where(Case.ref == refs[1]))
    assert one is not None and one.reporters == 2


def test_a_stopped_writer_stores_what_it_was_given(full_session: Session, settings: Settings,
                                                   resolve: Any) -> None:
    """stop() stores what is queued before the thread ends; later reports are refused."""
    writer = IntakeWriter(lambda: nested_transaction(full_session), settings)

    async def go() -> None:
        task = asyncio.ensure_future(writer.submit(_report(resolve, 0), CENTRE, private=False))
        await asyncio.sleep(0)
        await asyncio.to_thread(writer.stop)
        view, created = await task
        assert created and "reporter" not in view
        with pytest.raises(RuntimeError, match="stopped"):
            await writer.submit(_report(resolve, 1, dx=0.003), CENTRE, private=False)
    asyncio.run(go())
