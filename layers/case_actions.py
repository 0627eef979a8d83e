"""The action engine: every action on a case checked against the state machine
(layers.workflow) and the caller's role, applied under an optimistic lock (two concurrent
actions cannot both win: the loser gets 409 stale_version), the facts KPIs need kept on
the row, and every action appended to the case's event log."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from layers.case_queries import get
from layers.cases import Actor, answer_of
from layers.models import Case, CaseEvent, Department
from layers.workflow import OPEN, step
from spatial.errors import Conflict, InvalidInput, NotFound


class StaleVersion(Conflict):
    """Somebody else changed the case first."""

    code = "stale_version"


def _event(session: Session, case_id: int, actor: Actor, action: str, before: str | None,
           after: str | None, note: str = "", data: dict[str, Any] | None = None, *,
           at: datetime) -> None:
    """Append an event, stamped with the time the case row was (the facts kept on the row
    and the log agree to the microsecond)."""
    session.add(CaseEvent(case_id=case_id, at=at, actor=actor.name, role=actor.role,
                          action=action, from_status=before, to_status=after, note=note,
                          data=data or {}))


def _previous_open(session: Session, case: Case) -> str | None:
    """The state a suspended case came from."""
    return session.scalar(select(CaseEvent.from_status).where(
        CaseEvent.case_id == case.id, CaseEvent.to_status == "suspended").order_by(
        CaseEvent.id.desc()).limit(1))


def _stale(case: Case, version: int | None) -> StaleVersion:
    """The 409 for a caller who saw another version than the row's."""
    return StaleVersion(f"case {case.ref} is at version {case.version}, not {version}: "
                        "somebody changed it first; reload and retry",
                        extra={"version": case.version, "status": case.status})


# re-resolution may move a case to another department only before a dispatch stands
_REASSIGNABLE = ("collected", "accepted", "bounced")


def act(session: Session, case: Case, action: str, actor: Actor, *, version: int | None,
        note: str = "", data: dict[str, Any] | None = None,
        resolution: dict[str, Any] | None = None) -> Case:
    """Take an action: check it is legal for the state and the role, apply it with an
    optimistic lock (a stale version is a 409), and append its event. `re_resolve` takes
    the new `resolution` made by the server's resolver for the case's point."""
    data = dict(data or {})
    if actor.role == "department" and case.owner_department != actor.department:
        raise NotFound(f"no case {case.ref!r} for department {actor.department}")
    if version is not None and version != case.version:  # what the caller saw is gone
        raise _stale(case, version)
    before = case.status
    prev = _previous_open(session, case) if before == "suspended" else None
    after = step(before, action, actor.role, prev)
    now = session.execute(select(func.clock_timestamp())).scalar_one()
    values: dict[str, Any] = {"status": after, "version": case.version + 1, "updated_at": now}
    original = case.duplicate_of  # merge/split: the case it duplicates
    if action == "dispatch":
        dept = case.owner_department
        if data.get("department") is not None:
            dept = _department(session, data["department"])
        if not dept:
            raise InvalidInput("department: nobody to dispatch to; name a department")
        if data.get("deadline_hours") is not None:
            hours = _hours(data, "deadline_hours")
        else:
            hours = ((case.resolution.get("owner") or {}).get("category", {})
                     .get("deadline_hours") or 24)
        values.update(owner_department=dept, deadline_at=now + timedelta(hours=float(hours)),
                      dispatched_at=now)
        data.update(department=dept, deadline_at=values["deadline_at"].isoformat())
    elif action == "bounce":
        if not note.strip():
            raise InvalidInput("note: a bounce ('not ours') needs a reason")
        # the dispatch no longer stands; remember whose it was
        values.update(dispatched_at=None,
                      bounced_by=[*(case.bounced_by or []), case.owner_department])
        data["department"] = case.owner_department
    elif action == "accept":
        values["accepted_at"] = now
    elif action == "take":
        values["taken_at"] = now
    elif action == "feedback":
        if not note.strip():
            raise InvalidInput("note: feedback states the result of the handling")
        if data.get("photos") is not None:
            data["photos"] = _attached(session, case, data["photos"])
        if case.feedback_at is None:
            values["feedback_at"] = now
    elif action == "verify":
        values["verified_role"] = actor.role
    elif action == "extend":
        hours = _hours(data, "hours")
        base = case.deadline_at or now
        values["deadline_at"] = base + timedelta(hours=hours)
        data["deadline_at"] = values["deadline_at"].isoformat()
    elif action == "evaluate":
        score = data.get("satisfaction")
        if isinstance(score, bool) or score not in (1, 2, 3, 4, 5):
            raise InvalidInput("satisfaction: 1 (very unhappy) to 5 (very satisfied)")
        values["satisfaction"] = score
    elif action == "merge":
        target = _merge_target(session, case, data)
        values["duplicate_of"] = original = target.id
        data["into"] = target.ref
    elif action == "split":
        values["duplicate_of"] = None
    elif action == "re_resolve":
        if resolution is None:
            raise InvalidInput("re_resolve: the server resolves the case's point again; "
                               "it takes no resolution from the caller")
        values.update(_re_resolved(case, resolution, data))
    if after == "closed":
        values["closed_at"] = now
    if after == "in_progress" and before == "feedback":
        values["closed_at"] = None
    res = session.execute(
        update(Case).where(Case.id == case.id, Case.version == (version or case.version))
        .values(**values))
    if res.rowcount != 1:  # type: ignore[attr-defined]  # changed since it was read
        session.refresh(case)
        raise _stale(case, version)
    if action in ("merge", "split") and original is not None:
        ref = _count_reporter(session, case, original, +1 if action == "merge" else -1,
                              actor, now)
        if action == "split":
            data["from"] = ref
    _event(session, case.id, actor, action, before, after, note, data, at=now)
    session.flush()
    session.refresh(case)
    return case


MAX_HOURS = 24 * 366  # a deadline or an extension of more than a year is a typo


def _hours(data: dict[str, Any], key: str) -> float:
    """data[key] as a number of hours: finite, more than 0, at most a year (422 if not)."""
    v = data.get(key)
    if (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            or not 0 < v <= MAX_HOURS):
        raise InvalidInput(f"data.{key}: {v!r} is not a number of hours above 0 and at "
                           f"most {MAX_HOURS}")
    return float(v)


def _attached(session: Session, case: Case, names: Any) -> list[str]:
    """Photos a feedback points to: files attached to this case before (422 if not)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInput("data.photos: a list of photo file names attached to the case")
    have = set(session.scalars(select(CaseEvent.data["photo"]["file"].astext).where(
        CaseEvent.case_id == case.id, CaseEvent.action == "note")))
    missing = [n for n in names if n not in have]
    if missing:
        raise InvalidInput(f"data.photos: {', '.join(missing[:5])} not attached to case "
                           f"{case.ref} (POST /cases/{case.ref}/photos first)")
    return names


def _department(session: Session, code: Any) -> str:
    """A department named by the caller: one that exists today (422 if not)."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput(f"data.department: {code!r} is not a department code")
    if session.scalar(select(Department.code).where(
            Department.code == code, Department.valid_to.is_(None))) is None:
        raise InvalidInput(f"data.department: no current department {code[:40]!r} "
                           "(GET /layers/departments lists them)")
    return code


def _summary(resolution: dict[str, Any]) -> dict[str, Any]:
    """What a re-resolution's event compares of the answers before and after."""
    a = answer_of(resolution)
    return {"grid": a.grid, "generation": resolution.get("generation"), "owner": a.dept,
            "asset": a.asset, "decided_by": (resolution.get("owner") or {}).get("decided_by")}


def _re_resolved(case: Case, resolution: dict[str, Any], data: dict[str, Any]
                 ) -> dict[str, Any]:
    """The row's new answer after an explicit re-resolution; the event's data keeps the
    whole answer it had before, what changed, and whether the owner moved (only before a
    dispatch stands: a dispatched case stays with its department until the centre acts)."""
    old = case.resolution or {}
    new = orjson.loads(orjson.dumps({**resolution, "crs": old.get("crs", resolution.get("crs"))},
                                    default=str))  # as intake stores it: plain JSON
    b = answer_of(new)
    reassign = case.status in _REASSIGNABLE
    values: dict[str, Any] = {
        "resolution": new, "inside": b.inside, "grid_code": b.grid, "street_code": b.street,
        "h3_cell": new.get("h3"), "generation_id": new.get("generation")}
    if reassign:
        values["owner_department"] = b.dept
    before, after = _summary(old), _summary(new)
    data.update(before=before, after=after,
                changed=[k for k in before if before[k] != after[k]],
                department=b.dept if reassign else case.owner_department,
                owner_moved=reassign and b.dept != case.owner_department,
                previous_resolution=old)
    return values


def _merge_target(session: Session, case: Case, data: dict[str, Any]) -> Case:
    """The open case a report is merged into by hand (data "into": its reference)."""
    ref = data.get("into")
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("into: name the reference of the case this one duplicates")
    if ref == case.ref:
        raise InvalidInput(f"into: {ref} is this case; a case cannot duplicate itself")
    target = get(session, ref)
    if target.duplicate_of is not None:
        first = session.get(Case, target.duplicate_of)
        raise Conflict(f"{ref} is itself a duplicate of {first.ref if first else '?'}: "
                       "merge into that case")
    if target.status not in OPEN:
        raise Conflict(f"{ref} is {target.status}: only an open case takes duplicates")
    return target


def _count_reporter(session: Session, case: Case, original_id: int, delta: int,
                    actor: Actor, now: datetime) -> str:
    """The original of a merge counts one reporter more (or, on a split, one less), in one
    statement (concurrent merges and splits cannot lose a count), with an event on it; its
    version stays, so nobody's pending action on it goes stale. Returns its reference."""
    row = session.execute(
        update(Case).where(Case.id == original_id)
        .values(reporters=Case.reporters + delta, updated_at=now)
        .returning(Case.ref, Case.status, Case.reporters)).one()
    if delta > 0:
        _event(session, original_id, actor, "reporter_added", row.status, row.status,
               f"{case.ref} reports the same problem",
               {"from": case.ref, "reporters": row.reporters}, at=now)
    else:
        _event(session, original_id, actor, "reporter_removed", row.status, row.status,
               f"{case.ref} split off: not the same problem",
               {"split": case.ref, "reporters": row.reporters}, at=now)
    return str(row.ref)
