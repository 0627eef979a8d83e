"""A year of synthetic case history for the demo city: hotspot-clustered reports, realistic
lifecycles (accept, dispatch, bounce, take, feedback, escalate, verify, evaluate, merge),
every state change an event, written with COPY. Deterministic for a seed."""

from __future__ import annotations

import csv
import functools
import io
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from etl.demo_city import people
from layers import grids, versioning, workflow
from layers.escalation import ACTION as ESCALATE
from layers.escalation import ESCALATING, LEVELS
from layers.models import Case
from layers.ownership import Snapshot
from layers.ownership_store import load_snapshot
from layers.resolution import answer_for, normalise_point
from layers.resolver import build_index
from layers.settings import Settings
from layers.workflow import CENTRE, DEPARTMENT, PATROL, PUBLIC, SYSTEM
from spatial.index import GridIndex

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 86400.0
M_PER_DEG = 111_320.0

# Channels: patrols find most problems; the citizens' hotline is second.
CHANNEL_WEIGHTS = {
    "patrol_app": 0.52, "hotline_12345": 0.22, "camera": 0.11, "web": 0.04,
    "hotline_110": 0.03, "hotline_12319": 0.02, "hotline_962121": 0.02, "open311": 0.02,
    "media": 0.01, "letter": 0.01,
}
CITIZEN_CHANNELS = frozenset({"hotline_12345", "hotline_12319", "hotline_962121",
                              "hotline_110", "web", "open311", "letter", "media"})

# Background mix over the whole taxonomy (relative weights; unlisted codes get DEFAULT_W).
BACKGROUND = {
    "E0503": 10.0, "E0501": 8.0, "E0101": 8.0, "E0201": 7.0, "E0502": 5.0, "E0504": 5.0,
    "E0108": 4.0, "E0102": 3.5, "E0103": 3.0, "E0601": 3.0, "E0107": 2.0, "E0305": 2.0,
    "E0602": 2.0, "E0604": 1.5, "E0603": 1.5, "E0607": 1.5, "C0117": 2.5, "C0301": 2.0,
    "C0401": 1.5, "C0101": 0.8, "C0102": 0.8, "C0103": 1.0, "C0104": 1.0, "C0105": 0.6,
    "C0107": 0.6, "C0110": 0.4, "C0115": 0.5, "C0202": 1.0, "C0204": 0.8, "C0201": 0.8,
    "C0303": 0.8, "C0302": 0.8, "E0402": 0.8, "E0403": 0.6, "E0401": 0.3,
}
DEFAULT_W = 0.3


@dataclass(frozen=True)
class HotspotKind:
    """A kind of chronic-problem place (顽症): how many, how spread, what goes wrong there."""

    key: str
    place: str
    count: int
    sigma_m: float
    urban: bool
    categories: dict[str, float]


HOTSPOT_KINDS = (
    HotspotKind("market", "菜市场", 12, 90.0, True,
                {"E0501": 6, "E0502": 5, "E0101": 3, "E0103": 2, "E0505": 1.5, "E0201": 1.5,
                 "E0504": 1, "C0301": 1}),
    HotspotKind("station", "地铁站", 7, 160.0, True,
                {"E0503": 6, "E0504": 5, "E0507": 3, "E0201": 3, "E0203": 2, "E0501": 2,
                 "E0506": 1, "C0209": 0.5}),
    HotspotKind("school_gate", "学校门口", 9, 60.0, True,
                {"E0501": 5, "E0503": 4, "E0203": 2, "E0505": 1, "E0201": 1, "C0202": 0.5}),
    HotspotKind("construction", "建筑工地", 6, 110.0, True,
                {"E0301": 5, "E0302": 4, "E0304": 4, "E0303": 2, "E0306": 2, "E0102": 2,
                 "E0305": 1}),
    HotspotKind("village_edge", "村边", 6, 260.0, False,
                {"E0102": 5, "E0104": 4, "E0609": 2, "E0305": 3, "E0101": 2, "E0105": 1.5,
                 "E0606": 1}),
)
HOTSPOT_SHARE = 0.55  # of reports; the rest is background (area-uniform and grid-uniform)

DUPLICATE_SHARE = 0.04
REJECT_SHARE = 0.05
CANCEL_SHARE = 0.004
WRONG_DISPATCH = {"asset": 0.11, "area": 0.08, "category": 0.045, "specialist": 0.06}
WRONG_IF_DISPUTED = 0.25
SECOND_BOUNCE = 0.06  # of bounced cases, bounced once more
EXTEND_SHARE = 0.03
STALL_SHARE = 0.004  # taken but never fed back: the chronic overdue ones
REOPEN_SHARE = 0.04
PROMPT_VERIFY = 0.9
CENTRE_VERIFY = 0.45  # verified by the centre's callback (回访) rather than a patrol
EVALUATE_SHARE = 0.72
SATISFACTION_OK = np.array([0.02, 0.03, 0.08, 0.27, 0.60])
SATISFACTION_LATE = np.array([0.08, 0.10, 0.22, 0.32, 0.28])
HOUR_WEIGHTS = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.2, 0.6, 1.5, 3.0, 4.0, 4.2, 3.8, 2.8,
                         3.0, 3.8, 4.0, 3.6, 3.0, 2.2, 1.8, 1.5, 1.2, 0.8, 0.5])
BOUNCE_NOTES = ("not ours: 不属于本单位职责", "not ours: 权属不清，请另行派单",
                "not ours: 该设施非本单位产权", "not ours: 位于小区红线内，属物业管理")
REJECT_NOTES = ("不属于受理范围", "信息不全，无法立案", "已自行解决", "重复上报（已处理）")

CASE_COLUMNS = ("id", "ref", "channel", "category_code", "description", "status", "version",
                "geom", "input_crs", "inside", "grid_code", "street_code", "h3_cell",
                "generation_id", "owner_department", "resolution", "deadline_at", "escalation",
                "reporter_name", "reporter_phone", "reporters", "duplicate_of", "satisfaction",
                "created_at", "updated_at", "closed_at", "accepted_at", "dispatched_at",
                "taken_at", "feedback_at", "bounced_by", "verified_role")
EVENT_COLUMNS = ("case_id", "at", "actor", "role", "action", "from_status", "to_status",
                 "note", "data")
# Events that are no workflow action (every other one is, taken by layers.workflow.step,
# and bumps the case's version as layers.case_actions.act does): intake's report (a case starts
# at workflow.INITIAL) and its merge of a duplicate (the workflow's merge, by the system);
# a reporter joining and the scheduler's escalation (layers.escalation) keep the state and
# the version.
REPORT, REPORTER_ADDED, MERGE = "report", "reporter_added", "merge"
WGS84 = "EPSG:4326"  # the demo's points are WGS84 lon/lat


@dataclass
class _Places:
    """Where reports fall: hotspots and their kinds."""

    lon: np.ndarray
    lat: np.ndarray
    kind: np.ndarray  # index into HOTSPOT_KINDS
    name: list[str]


def _lognormal(rng: np.random.Generator, median_s: np.ndarray | float, sigma: float,
               n: int) -> np.ndarray:
    """Durations in seconds with the given median (right-skewed, like real waiting times)."""
    return np.asarray(median_s) * np.exp(rng.normal(0.0, sigma, n))


def _hotspots(session: Session, rng: np.random.Generator) -> _Places:
    """~40 hotspot points at points-on-surface of urban (or, for village edges, rural) grids."""
    rows = session.execute(text(
        "SELECT u.code, coalesce(u.attributes->>'kind', '') AS kind, "
        "ST_X(ST_PointOnSurface(u.geom)) AS x, ST_Y(ST_PointOnSurface(u.geom)) AS y "
        f"FROM grid_unit u WHERE {versioning.current('u')} AND u.level = "
        f"{versioning.finest_level(versioning.ACTIVE_GENERATION_SQL)} ORDER BY u.code"),
    ).all()
    urban = [r for r in rows if r.kind != "rural"] or rows
    rural = [r for r in rows if r.kind == "rural"] or rows
    lon: list[float] = []
    lat: list[float] = []
    kind: list[int] = []
    names: list[str] = []
    for k, hk in enumerate(HOTSPOT_KINDS):
        pool = urban if hk.urban else rural
        for j, i in enumerate(rng.choice(len(pool), size=min(hk.count, len(pool)),
                                         replace=False)):
            lon.append(pool[int(i)].x)
            lat.append(pool[int(i)].y)
            kind.append(k)
            names.append(f"{hk.place}{j + 1}")
    return _Places(np.array(lon), np.array(lat), np.array(kind), names)


def _created(rng: np.random.Generator, n: int, end: float, tz: ZoneInfo) -> np.ndarray:
    """Report times over the 365 days before end: diurnal, weekly and seasonal rhythm."""
    start = end - 365 * DAY
    first = datetime.fromtimestamp(start, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [first + timedelta(days=d) for d in range(367)]
    day_start = np.array([d.timestamp() for d in days])
    w = np.array([(0.75 if d.isoweekday() >= 6 else 1.0)
                  * (1.0 + 0.15 * np.cos((d.month - 7) / 12 * 2 * np.pi)) for d in days])
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        day = rng.choice(len(days), size=todo.size, p=w / w.sum())
        hour = rng.choice(24, size=todo.size, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
        t = day_start[day] + hour * HOUR + rng.uniform(0, HOUR, todo.size)
        ok = (t >= start) & (t < end)
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    return np.sort(out)


def _weights(codes: list[str], table: dict[str, float]) -> np.ndarray:
    w = np.array([table.get(c, 0.0) for c in codes])
    return w / w.sum()


def _locations(rng: np.random.Generator, idx: Any, places: _Places, n: int,
               codes: list[str]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points (all inside the grid), their finest grid and category, and their hotspot or -1."""
    bg = _weights(codes, {c: BACKGROUND.get(c, DEFAULT_W) for c in codes})
    per_kind = [_weights(codes, hk.categories) for hk in HOTSPOT_KINDS]
    weights = np.array([hk.count for hk in HOTSPOT_KINDS], dtype=float)
    spot_w = np.array([weights[k] for k in places.kind]) / weights.sum()
    spot_w = spot_w * rng.uniform(0.5, 1.5, len(spot_w))  # some markets are busier
    spot_w /= spot_w.sum()
    lon = np.empty(n)
    lat = np.empty(n)
    spot = np.where(rng.random(n) < HOTSPOT_SHARE, rng.choice(len(spot_w), n, p=spot_w), -1)
    sigma = np.array([HOTSPOT_KINDS[k].sigma_m for k in places.kind])
    x0, y0, x1, y1 = _bounds(idx)
    centres = _grid_points(idx)
    grid = np.full(n, -1, dtype=np.int32)
    todo = np.arange(n)
    while todo.size:
        s = spot[todo]
        hot = s >= 0
        coslat = np.cos(np.radians(np.where(hot, places.lat[np.maximum(s, 0)], 31.0)))
        sig = sigma[np.maximum(s, 0)]
        lo = places.lon[np.maximum(s, 0)] + rng.normal(0, 1, todo.size) * sig / (M_PER_DEG
                                                                                * coslat)
        la = places.lat[np.maximum(s, 0)] + rng.normal(0, 1, todo.size) * sig / M_PER_DEG
        # background: half area-uniform, half around a random grid (urban grids are small)
        uni = rng.random(todo.size) < 0.5
        g = rng.integers(0, len(centres[0]), todo.size)
        spread = centres[2][g] * rng.normal(0, 1, (2, todo.size))
        blo = np.where(uni, rng.uniform(x0, x1, todo.size), centres[0][g] + spread[0])
        bla = np.where(uni, rng.uniform(y0, y1, todo.size), centres[1][g] + spread[1])
        lo = np.where(hot, lo, blo)
        la = np.where(hot, la, bla)
        found = idx.lookup(lo, la)
        ok = found >= 0
        lon[todo[ok]], lat[todo[ok]], grid[todo[ok]] = lo[ok], la[ok], found[ok]
        todo = todo[~ok]
    cat = np.empty(n, dtype=np.int32)
    back = spot < 0
    cat[back] = rng.choice(len(codes), int(back.sum()), p=bg)
    for k, p in enumerate(per_kind):
        sel = (spot >= 0) & (places.kind[np.maximum(spot, 0)] == k)
        # a third of what happens at a hotspot is the usual background mix
        mix = rng.random(int(sel.sum())) < 0.33
        cat[sel] = np.where(mix, rng.choice(len(codes), int(sel.sum()), p=bg),
                            rng.choice(len(codes), int(sel.sum()), p=p))
    return lon, lat, grid, cat, spot


def _bounds(idx: Any) -> tuple[float, float, float, float]:
    import shapely

    b = shapely.total_bounds(idx.geoms)
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def _grid_points(idx: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Representative point of every finest grid and a spread (degrees) from its size."""
    import shapely

    pts = shapely.point_on_surface(idx.geoms)
    area = shapely.area(idx.geoms)
    return shapely.get_x(pts), shapely.get_y(pts), np.sqrt(area) * 0.3


@dataclass
class _People:
    """Who acts: centre staff, each department's handlers, each grid's patrol members."""

    centre: list[str]
    handlers: dict[str, list[str]]
    patrol: dict[str, list[str]]
    citizens: list[tuple[str, str]]


def _people(session: Session, rng: np.random.Generator, depts: list[str]) -> _People:
    centre = [n for n, _ in people(rng, 16)]
    handlers = {d: [n for n, _ in people(rng, 4)] for d in depts}
    patrol: dict[str, list[str]] = {}
    for r in session.execute(text(
            "SELECT grid_code, name FROM grid_role WHERE valid_to IS NULL "
            "AND role IN ('supervisor', 'auxiliary') ORDER BY grid_code, id")):
        patrol.setdefault(r.grid_code, []).append(r.name)
    return _People(centre, handlers, patrol, people(rng, 5000))


def _compact(owner: dict[str, Any]) -> dict[str, Any]:
    """The owner answer without trail, patrol and contacts (who, how, category, asset)."""
    o = owner.get("owner") or {}
    return {"owner": {"code": o.get("code"), "name": o.get("name")} if o else None,
            "decided_by": owner.get("decided_by"), "disputed": owner.get("disputed"),
            "category": owner.get("category"),
            "asset": {"code": owner["asset"]["code"]} if owner.get("asset") else None,
            "area": {"code": owner["area"]["code"]} if owner.get("area") else None}


def _answer(idx: GridIndex, snap: Snapshot, lon: float, lat: float, category: str,
            settings: Settings, chains: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A case's stored resolution as the API makes it (layers.resolution.answer_for) for a
    point inside the grid, the owner answer compacted (_compact) and the chain one list per
    grid (200,000 answers are kept in memory until written); the CRS is added when written."""
    a = answer_for(idx, snap, lon, lat, category, settings)
    if not a["chain"]:
        raise ValueError(f"demo point {lon}, {lat} lies outside every grid")
    a["chain"] = chains.setdefault(a["chain"][-1]["code"], a["chain"])
    a["owner"] = _compact(a["owner"])
    return a


@dataclass
class _Plan:
    """Every case's random draws (times in epoch seconds), computed once for all cases."""

    n: int
    created: np.ndarray
    outcome: np.ndarray  # 0 accepted, 1 rejected, 2 cancelled, 3 duplicate (merged)
    t_decide: np.ndarray
    bounces: np.ndarray
    t_disp: np.ndarray  # first dispatch
    gap_bounce: np.ndarray  # (2, n) dispatch -> bounce
    gap_redisp: np.ndarray  # (2, n) bounce -> re-dispatch
    take_gap: np.ndarray
    late: np.ndarray
    work_frac: np.ndarray
    late_by: np.ndarray
    extend: np.ndarray
    extend_h: np.ndarray
    stall: np.ndarray
    reopen: np.ndarray
    reopen_gap: np.ndarray
    refeed_gap: np.ndarray
    verify_gap: np.ndarray
    prompt: np.ndarray  # verified before the deadline when there is time
    verify_frac: np.ndarray
    centre_verify: np.ndarray
    evaluate: np.ndarray
    eval_gap: np.ndarray
    sat_ok: np.ndarray
    sat_late: np.ndarray
    pick: np.ndarray  # (6, n) uniform draws to pick people


def _plan(rng: np.random.Generator, created: np.ndarray, take_median: np.ndarray,
          ontime: np.ndarray, wrong_p: np.ndarray) -> _Plan:
    n = len(created)
    u = rng.random(n)
    outcome = np.where(u < REJECT_SHARE, 1, np.where(u < REJECT_SHARE + CANCEL_SHARE, 2, 0))
    t_decide = created + _lognormal(rng, 9 * 60.0, 0.9, n)
    first = rng.random(n) < wrong_p
    bounces = first.astype(np.int8) + (first & (rng.random(n) < SECOND_BOUNCE))
    return _Plan(
        n=n, created=created, outcome=outcome, t_decide=t_decide, bounces=bounces,
        t_disp=t_decide + _lognormal(rng, 15 * 60.0, 1.0, n),
        gap_bounce=_lognormal(rng, 80 * 60.0, 0.9, 2 * n).reshape(2, n),
        gap_redisp=_lognormal(rng, 25 * 60.0, 0.8, 2 * n).reshape(2, n),
        take_gap=_lognormal(rng, take_median * 60.0, 1.0, n),
        late=rng.random(n) >= ontime,
        work_frac=rng.uniform(0.08, 0.7, n),
        late_by=_lognormal(rng, 10 * HOUR, 1.1, n),
        extend=rng.random(n) < EXTEND_SHARE,
        extend_h=rng.choice([24.0, 48.0, 72.0], n),
        stall=rng.random(n) < STALL_SHARE,
        reopen=rng.random(n) < REOPEN_SHARE,
        reopen_gap=_lognormal(rng, 3 * HOUR, 0.8, n),
        refeed_gap=_lognormal(rng, 8 * HOUR, 0.9, n),
        verify_gap=_lognormal(rng, 2.5 * HOUR, 1.0, n),
        prompt=rng.random(n) < PROMPT_VERIFY,
        verify_frac=rng.uniform(0.1, 0.9, n),
        centre_verify=rng.random(n) < CENTRE_VERIFY,
        evaluate=rng.random(n) < EVALUATE_SHARE,
        eval_gap=_lognormal(rng, 6 * HOUR, 1.0, n),
        sat_ok=rng.choice(5, n, p=SATISFACTION_OK) + 1,
        sat_late=rng.choice(5, n, p=SATISFACTION_LATE) + 1,
        pick=rng.random((6, n)),
    )


@dataclass
class _Ev:
    """One planned event; the state it leads to is the workflow's (see _after)."""

    at: float
    actor: str
    role: str
    action: str
    note: str = ""
    data: dict[str, Any] | None = None


@functools.cache
def _step(state: str, action: str, role: str, previous: str | None) -> str:
    return workflow.step(state, action, role, previous)  # the same few keys, 10^6 times


def _after(state: str, e: _Ev, previous: str | None = None) -> tuple[str, bool]:
    """The state after an event, and whether it is a workflow action (one that bumps the
    case's version, as layers.case_actions.act does): the workflow's step for the action and the
    role (IllegalTransition or Forbidden if not possible); the same state for the
    scheduler's escalation (only of a state it escalates) and a reporter joining."""
    if e.action == ESCALATE:
        if state not in ESCALATING:
            raise workflow.IllegalTransition(f"the scheduler does not escalate a {state} case")
        return state, False
    if e.action == REPORTER_ADDED:
        return state, False
    return _step(state, e.action, e.role, previous), True


def _closes(life: list[_Ev]) -> float:
    """When a lifecycle leaves the open states (a duplicate can only join it before)."""
    state, previous = workflow.INITIAL, None
    for e in life:
        to, _ = _after(state, e, previous)
        state, previous = to, (state if to != state else previous)
        if state not in workflow.OPEN:
            return e.at
    return np.inf


def _choose(names: list[str], u: float) -> str:
    return names[int(u * len(names)) % len(names)]


def _lifecycle(p: _Plan, i: int, cat: dict[str, Any], right: str, wrong: list[str],
               ppl: _People, grid: str, channel: str, escal: tuple[float, float]
               ) -> list[_Ev]:
    """The planned events of one (non-duplicate) case, before cutting at the year's end."""
    u = p.pick[:, i]
    centre = _choose(ppl.centre, u[0])
    patrols = ppl.patrol.get(grid) or ppl.centre
    ev: list[_Ev] = []
    if p.outcome[i] == 1:
        return [_Ev(p.t_decide[i], centre, CENTRE, "reject",
                    REJECT_NOTES[int(u[1] * len(REJECT_NOTES))])]
    if p.outcome[i] == 2:
        return [_Ev(p.t_decide[i], centre, CENTRE, "cancel", "上报人撤回")]
    ev.append(_Ev(p.t_decide[i], centre, CENTRE, "accept"))
    deadline_h = float(cat["deadline_hours"])
    t = float(p.t_disp[i])
    nb = int(p.bounces[i])
    targets = [wrong[int(u[2] * len(wrong)) % len(wrong)] if wrong else right] * nb + [right]
    if nb == 2 and len(wrong) > 1:
        targets[1] = wrong[(int(u[2] * len(wrong)) + 1) % len(wrong)]
    for k, dept in enumerate(targets):
        ev.append(_Ev(t, centre, CENTRE, "dispatch", data={
            "department": dept, "deadline_at": t + deadline_h * HOUR}))
        if k < nb:
            t += float(p.gap_bounce[k, i])
            ev.append(_Ev(t, _choose(ppl.handlers[dept], u[3]), DEPARTMENT, "bounce",
                          BOUNCE_NOTES[int(u[4] * len(BOUNCE_NOTES))]))
            t += float(p.gap_redisp[k, i])
    t_disp = t
    deadline = t_disp + deadline_h * HOUR
    handler = _choose(ppl.handlers[right], u[3])
    t_take = t_disp + float(p.take_gap[i])
    ev.append(_Ev(t_take, handler, DEPARTMENT, "take"))
    t_ext = max(t_disp + 0.5 * (deadline - t_disp), t_take + 60)
    if p.extend[i]:
        deadline += float(p.extend_h[i]) * HOUR
    late = bool(p.late[i]) and not p.extend[i]
    t_fb = np.inf if p.stall[i] else (
        max(deadline, t_take) + float(p.late_by[i]) if late
        else t_take + float(p.work_frac[i]) * max(deadline - t_take, 1800.0))
    if p.extend[i]:  # asked for while in progress: before the feedback of a quick job
        ev.append(_Ev(t_ext if t_ext < t_fb else t_take + 0.5 * (t_fb - t_take), centre,
                      CENTRE, "extend", "申请延期已批准",
                      {"hours": float(p.extend_h[i]), "deadline_at": deadline}))
    t_close = np.inf
    if not p.stall[i]:
        ev.append(_Ev(t_fb, handler, DEPARTMENT, "feedback", "已处置完毕"))
        t = t_fb
        verifier, vrole = ((centre, CENTRE) if p.centre_verify[i]
                           else (_choose(patrols, u[5]), PATROL))
        if p.reopen[i]:
            t += float(p.reopen_gap[i])
            ev.append(_Ev(t, verifier, vrole, "reopen", "现场复核未整改到位"))
            t += float(p.refeed_gap[i])
            ev.append(_Ev(t, handler, DEPARTMENT, "feedback", "已再次处置"))
        if p.prompt[i] and t < deadline - 600:  # checked while the deadline still holds
            t_close = t + float(p.verify_frac[i]) * (deadline - t)
        else:
            t_close = t + float(p.verify_gap[i]) * min(1.0, max(0.15, deadline_h / 24))
        ev.append(_Ev(t_close, verifier, vrole, "verify",
                      "电话回访确认已解决" if vrole == CENTRE else "现场核查已解决"))
        if p.evaluate[i]:
            score = int(p.sat_late[i] if late else p.sat_ok[i])
            citizen = channel in CITIZEN_CHANNELS
            ev.append(_Ev(t_close + float(p.eval_gap[i]), "public" if citizen else centre,
                          PUBLIC if citizen else CENTRE, "evaluate",
                          data={"satisfaction": score}))
    for level, at in ((1, deadline), (2, deadline + escal[0] * HOUR),
                      (3, deadline + escal[1] * HOUR)):
        if at + 30 < t_close:
            ev.append(_Ev(at + 30, "scheduler", SYSTEM, ESCALATE, f"overdue: {LEVELS[level]}",
                          {"level": level}))
    ev.sort(key=lambda e: e.at)
    return ev


class _Writer:
    """CSV buffers for COPY ... FROM STDIN WITH (FORMAT csv)."""

    def __init__(self) -> None:
        self.buf = io.StringIO()
        self.w = csv.writer(self.buf, lineterminator="\n")
        self.rows = 0

    def row(self, values: tuple[Any, ...]) -> None:
        self.w.writerow(values)
        self.rows += 1

    def copy(self, cur: Any, table: str, columns: tuple[str, ...], not_null: str) -> None:
        self.buf.seek(0)
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, "
                        f"FORCE_NOT_NULL ({not_null}))", self.buf)
        self.buf = io.StringIO()
        self.w = csv.writer(self.buf, lineterminator="\n")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def generate_history(session: Session, *, settings: Settings, cases: int = 200_000,
                     year_end: datetime | None = None, seed: int = 2025) -> dict[str, int]:
    """Write a year (before year_end, default now) of cases and events; returns counts.
    Every state change is a step of layers.workflow, every resolution the API's answer."""
    t0 = time.perf_counter()
    tz = ZoneInfo(settings.timezone)
    session.flush()
    end = (year_end or session.execute(text("SELECT clock_timestamp()")).scalar_one())
    end_s = end.timestamp()
    rng = np.random.default_rng(seed)
    gen = grids.active_generation(session)
    if gen is None:
        raise grids.NotFound("no active grid generation: load the demo city first")
    idx = build_index(session, gen, settings)
    snap = load_snapshot(session, settings)
    codes = sorted(snap.categories)
    depts = sorted(snap.departments)
    places = _hotspots(session, rng)
    ppl = _people(session, rng, depts)
    # department profiles: some answer fast and on time, some do not
    take_median = dict(zip(depts, np.exp(rng.normal(np.log(30.0), 0.55, len(depts))),
                           strict=True))
    ontime = dict(zip(depts, np.clip(rng.normal(0.9, 0.05, len(depts)), 0.7, 0.99),
                      strict=True))

    n_dup = round(cases * DUPLICATE_SHARE)
    n = cases - n_dup
    created = _created(rng, n, end_s, tz)
    lon, lat, grid, cat, spot = _locations(rng, idx, places, n, codes)
    channel_names = list(CHANNEL_WEIGHTS)
    cw = np.array(list(CHANNEL_WEIGHTS.values()))
    channel = rng.choice(len(channel_names), n, p=cw / cw.sum())

    # resolutions: the API's answer, owner rules and all, for every case (≈ 80 µs a case)
    chains: dict[str, list[dict[str, Any]]] = {}
    answers = [_answer(idx, snap, float(lon[i]), float(lat[i]), codes[cat[i]], settings,
                       chains) for i in range(n)]
    owners = [a["owner"] for a in answers]
    right = [((o.get("owner") or {}).get("code") or snap.categories[codes[cat[i]]][
        "default_department"]) for i, o in enumerate(owners)]
    wrong_p = np.array([WRONG_IF_DISPUTED if o["disputed"] else
                        WRONG_DISPATCH[o["category"]["owner_rule"]] for o in owners])
    for d in sorted(set(right) - set(ppl.handlers)):  # owners that are not departments
        ppl.handlers[d] = [nm for nm, _ in people(rng, 4)]
    plan = _plan(rng, created, np.array([take_median.get(d, 30.0) for d in right]),
                 np.array([ontime.get(d, 0.9) for d in right]), wrong_p)

    # confusable departments: other owners in the same major class, and the street office
    by_major: dict[str, set[str]] = {}
    for c in snap.categories.values():
        by_major.setdefault(c["major_code"], set()).add(c["default_department"])
    street_of = [next((u["code"] for u in a["chain"] if u["level"] == 2), None)
                 for a in answers]

    confusable: dict[tuple[str, str | None, str], list[str]] = {}

    def wrong_for(i: int) -> list[str]:
        major = snap.categories[codes[cat[i]]]["major_code"]
        key = (major, street_of[i], right[i])
        out = confusable.get(key)
        if out is None:
            office = snap.street_office.get(street_of[i] or "")
            pool = by_major[major] | ({office} if office else set())
            out = confusable[key] = sorted(d for d in pool
                                           if d != right[i] and d in ppl.handlers)
        return out

    # lifecycles of the originals, then duplicates of cases still open
    escal = (settings.escalate_second_tier_h, settings.escalate_first_tier_h)

    def life_of(i: int) -> list[_Ev]:
        return _lifecycle(plan, i, snap.categories[codes[cat[i]]], right[i], wrong_for(i),
                          ppl, str(idx.codes[grid[i]]), channel_names[channel[i]], escal)

    # when each case stops being open (duplicates can only join open cases); the events
    # themselves are drawn again when written, to keep memory flat
    closes = np.array([_closes(life_of(i)) for i in range(n)])
    ok = (plan.outcome == 0) & (created < end_s - 600)
    parents = rng.choice(np.flatnonzero(ok), n_dup) if n_dup else np.empty(0, dtype=np.int64)
    window = np.minimum.reduce([closes[parents] - created[parents], np.full(n_dup, DAY),
                                end_s - created[parents] - 60])
    d_created = created[parents] + rng.uniform(0.02, 0.98, n_dup) * np.maximum(window, 1.0)
    d_lon = lon[parents] + rng.normal(0, 8, n_dup) / (M_PER_DEG * np.cos(np.radians(31.0)))
    d_lat = lat[parents] + rng.normal(0, 8, n_dup) / M_PER_DEG
    outside = idx.lookup(d_lon, d_lat) < 0  # reported at the parent's point instead
    d_lon = np.where(outside, lon[parents], d_lon)
    d_lat = np.where(outside, lat[parents], d_lat)
    d_channel = rng.choice(len(channel_names), n_dup, p=cw / cw.sum())
    d_answers = [_answer(idx, snap, float(d_lon[j]), float(d_lat[j]), codes[cat[parents[j]]],
                         settings, chains) for j in range(n_dup)]

    # everything in time order: ids and refs ascend with the report time
    all_created = np.concatenate([created, d_created])
    order = np.argsort(all_created, kind="stable")
    total = len(order)
    pos = np.empty(total, dtype=np.int64)
    pos[order] = np.arange(total)
    ids = np.array(session.execute(text(
        "SELECT nextval(pg_get_serial_sequence('\"case\"', 'id')) FROM generate_series(1, :n)"),
        {"n": total}).scalars().all(), dtype=np.int64)
    ids.sort()
    case_id = ids[pos]  # by source index (originals 0..n-1, duplicates n..)
    base = int(rng.integers(0x100000000, 0x800000000))
    years = np.array([datetime.fromtimestamp(t, tz).year for t in all_created])
    refs = [f"SJ{years[k]}-{base + int(pos[k]):09X}" for k in range(total)]
    dups_of: dict[int, list[int]] = {}
    for j, par in enumerate(parents):
        dups_of.setdefault(int(par), []).append(j)
    for lst in dups_of.values():
        lst.sort(key=lambda j: d_created[j])

    cits = ppl.citizens
    counts: dict[str, int] = {}
    n_events = 0
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    cases_w, events_w = _Writer(), _Writer()

    def flush() -> None:
        t1 = time.perf_counter()
        cases_w.copy(cur, '"case"', CASE_COLUMNS, "description")
        t2 = time.perf_counter()
        events_w.copy(cur, "case_event", EVENT_COLUMNS, "note")
        log.debug("COPY cases %.2f s, events %.2f s", t2 - t1, time.perf_counter() - t2)

    for k in (int(v) for v in order):
        dup = k >= n
        src = int(parents[k - n]) if dup else k
        t_rep = float(all_created[k])
        answer = d_answers[k - n] if dup else answers[k]
        ch, owner = answer["chain"], answer["owner"]
        point = normalise_point(*((float(d_lon[k - n]), float(d_lat[k - n])) if dup
                                  else (float(lon[k]), float(lat[k]))), WGS84)
        chan = channel_names[int(d_channel[k - n] if dup else channel[k])]
        cat_code = codes[cat[src]]
        cid = int(case_id[k])
        grid_code = ch[-1]["code"]
        street = next((u["code"] for u in ch if u["level"] == 2), None)
        place = (places.name[int(spot[src])] if spot[src] >= 0 else grid_code[-6:] + "网格")
        cname = snap.categories[cat_code]["name"]
        if chan == "patrol_app":
            who = _choose(ppl.patrol.get(grid_code) or ppl.centre, plan.pick[5, src])
            role = PATROL
        elif chan == "camera":
            who, role = "camera-ai", SYSTEM
        else:
            who, role = _choose(ppl.centre, plan.pick[1, src]), CENTRE
        citizen = chan in CITIZEN_CHANNELS
        rep = cits[(k * 7919) % len(cits)] if citizen else (None, None)
        owner_code = (owner.get("owner") or {}).get("code")
        status = workflow.INITIAL
        evs: list[tuple[float, str, str, str, str | None, str, str, dict[str, Any]]] = [
            (t_rep, who, role, REPORT, None, status, f"{cname}（{place}附近）",
             {"channel": chan, "inside": True, "owner": owner_code,
              "disputed": owner["disputed"]})]
        if dup:  # intake merges it at once (its version stays, as layers.cases writes it)
            par_ref = refs[src]
            merged = workflow.next_state(status, MERGE)
            evs.append((t_rep + 0.5, "system", SYSTEM, MERGE, status, merged,
                        f"same problem as {par_ref}", {"into": par_ref}))
            status = merged
            life: list[_Ev] = []
        else:
            life = life_of(k)
            # reporters who joined this case later
            for r, j in enumerate(dups_of.get(k, []), start=2):
                life.append(_Ev(float(d_created[j]) + 0.5, "system", SYSTEM, REPORTER_ADDED,
                                f"{refs[n + j]} reports the same problem",
                                {"from": refs[n + j], "reporters": r}))
            life.sort(key=lambda e: e.at)
        previous: str | None = None  # the state before the last change (for a resume)
        version = 1
        deadline: float | None = None
        dept = owner_code
        closed: float | None = None
        sat: int | None = None
        esc = 0
        reporters = 1
        # the facts layers.case_actions.act keeps on the row
        accepted: float | None = None
        dispatched: float | None = None
        taken: float | None = None
        fed_back: float | None = None
        bounced_by: list[str] = []
        verified_role: str | None = None
        for e in life:
            if e.at >= end_s:
                break
            to, acted = _after(status, e, previous)
            data = dict(e.data or {})
            if e.action == "dispatch":
                dept = data["department"]
                deadline = data["deadline_at"]
                dispatched = e.at
            elif e.action == "bounce":
                bounced_by.append(str(dept))  # a bounce follows a dispatch: dept is set
                dispatched = None
                data["department"] = dept
            elif e.action == "accept":
                accepted = e.at
            elif e.action == "take":
                taken = e.at
            elif e.action == "feedback":
                fed_back = fed_back or e.at
            elif e.action == "extend":
                deadline = data["deadline_at"]
            elif e.action == "verify":
                closed = e.at
                verified_role = e.role
            elif e.action == "evaluate":
                sat = data["satisfaction"]
            elif e.action == ESCALATE:
                esc = data["level"]
            elif e.action == REPORTER_ADDED:
                reporters = data["reporters"]
            if "deadline_at" in data:
                data["deadline_at"] = _iso(data["deadline_at"])
            if acted:  # a workflow action: layers.case_actions.act bumps the version
                version += 1
            evs.append((e.at, e.actor, e.role, e.action, status, to, e.note, data))
            status, previous = to, (status if to != status else previous)
        updated = evs[-1][0]
        resolution = {**answer, "crs": point.crs}
        cases_w.row((
            cid, refs[k], chan, cat_code, evs[0][6], status, version,
            f"SRID=4326;POINT({point.lon!r} {point.lat!r})", point.crs["key"], "t", grid_code,
            street, answer["h3"], answer["generation"], dept,
            orjson.dumps(resolution).decode(),
            _iso(deadline) if deadline else None, esc, rep[0], rep[1], reporters,
            int(case_id[src]) if dup else None, sat, _iso(t_rep), _iso(updated),
            _iso(closed) if closed else None, *(_iso(t) if t else None for t in (
                accepted, dispatched, taken, fed_back)),
            "{" + ",".join(f'"{d}"' for d in bounced_by) + "}" if bounced_by else None,
            verified_role))
        for at, actor, erole, action, frm, to, note, data in evs:
            events_w.row((cid, _iso(at), actor, erole, action, frm, to, note,
                          orjson.dumps(data).decode()))
        n_events += len(evs)
        counts[status] = counts.get(status, 0) + 1
        if cases_w.rows % 50_000 == 0:
            flush()
    flush()
    session.execute(text('ANALYZE "case"'))
    session.execute(text("ANALYZE case_event"))
    log.info("demo history: %d cases, %d events in %.1f s", total, n_events,
             time.perf_counter() - t0)
    return {"cases": total, "events": n_events, "duplicates": n_dup,
            **{f"status_{s}": v for s, v in sorted(counts.items())}}


def load_demo_history(session: Session, settings: Settings) -> dict[str, int] | None:
    """A year of demo history (200,000 cases) unless any case exists; None if skipped."""
    if session.scalar(select(Case.id).limit(1)) is not None:
        return None
    return generate_history(session, settings=settings)
