"""Who is responsible at a point, for a category, at a time: the owner-resolution rules.

Rules, in order (each one recorded in the answer's trail with its candidates and why it won
or lost):
1. asset: the nearest asset of the category's kind within its snap radius; two of
   different owners whose distances differ by less than the dispute margin = disputed;
2. area: the ownership area of highest priority covering the point that applies to the
   category; two of different owners at the top priority = disputed;
3. category: the category's default department;
4. specialist: the grid's specialist (Y of 1 + X + Y) for that department;
5. territorial (属地兜底): where nothing applies or the owner is disputed, the street/town
   office of the spot takes it first, with ``disputed: true`` and the candidates.
Which of rules 1-2 a category uses follows its ``owner_rule``; the others are recorded as
skipped. The patrol team on duty and the grid leader come with every answer.

Everything is in memory (a Snapshot of the layers valid at one time): KD-trees per asset
kind in metres, an STRtree of areas. The current snapshot is kept by the server; a question
about another time builds a small snapshot of the rows near the point valid then, and the
same rules answer it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from scipy.spatial import cKDTree

from layers.settings import Settings
from spatial.errors import InvalidInput

log = logging.getLogger(__name__)

NEIGHBOURS = 4  # assets fetched per query: enough to see a dispute


@dataclass
class AssetSet:
    """Assets of one kind: a KD-tree over their metric coordinates and column arrays
    (department codes as small integers into a shared table): ~100 bytes an asset."""

    tree: cKDTree
    codes: np.ndarray  # bytes, 16 digits
    names: np.ndarray  # object
    depts: np.ndarray  # int16 (n, 3): owner, maintainer, supervising -> Snapshot.dept_codes
    states: np.ndarray  # int8 -> STATES
    categories: np.ndarray  # object (few distinct, shared strings)
    kind: str

    def __len__(self) -> int:
        return len(self.codes)

    def row(self, i: int, dept_codes: list[str]) -> dict[str, Any]:
        """One asset as the rules and answers see it."""
        o, m, s = self.depts[i]
        return {"code": self.codes[i].decode(), "kind": self.kind, "name": self.names[i],
                "category_code": self.categories[i], "owner_department": dept_codes[o],
                "maintainer_department": dept_codes[m], "supervising_department": dept_codes[s],
                "state": STATES[self.states[i]]}


STATES = ("intact", "damaged", "missing", "occupied")
# more than any snap radius (≤ 500 m) in degrees of latitude, with room for longitude's
ASSET_EXTENT_PAD_DEG = 0.05


@dataclass
class Snapshot:
    """The responsibility layers valid at one time, ready for microsecond questions."""

    at: datetime
    departments: dict[str, dict[str, Any]]
    categories: dict[str, dict[str, Any]]
    street_office: dict[str, str]
    assets: dict[str, AssetSet]
    dept_codes: list[str]
    areas: list[dict[str, Any]]
    area_tree: shapely.STRtree | None
    area_geoms: np.ndarray
    specialists: dict[str, dict[str, dict[str, Any]]]
    leaders: dict[str, dict[str, Any]]
    shifts: dict[str, list[dict[str, Any]]]
    teams: dict[str, dict[str, Any]]
    metric: Any
    # lon/lat box of every asset, padded by ASSET_EXTENT_PAD_DEG; None when there are none
    asset_extent: tuple[float, float, float, float] | None = None
    built_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    # -------------------------------------------------------------- questions

    def asset_xy(self, lon: float, lat: float) -> tuple[float, float] | None:
        """The point in the metric CRS of the asset trees, or None where no asset can be
        near (outside the assets' box: far from the deployment the metric CRS breaks)."""
        e = self.asset_extent
        if e is None or not (e[0] <= lon <= e[2] and e[1] <= lat <= e[3]):
            return None
        x, y = self.metric(lon, lat)
        return (float(x), float(y)) if math.isfinite(x) and math.isfinite(y) else None

    def department(self, code: str | None) -> dict[str, Any] | None:
        """A department as answers show it."""
        if code is None:
            return None
        d = self.departments.get(code)
        if d is None:
            return {"code": code, "name": None, "tier": None, "known": False}
        return {"code": code, "name": d["name"], "name_en": d["name_en"], "tier": d["tier"],
                "contact_phone": d["contact_phone"]}

    def category(self, code: str) -> dict[str, Any]:
        """A category by code; 422 naming the unknown code."""
        c = self.categories.get(code)
        if c is None:
            raise InvalidInput(f"category: unknown category {code!r} "
                               f"({len(self.categories)} categories are defined; see "
                               "GET /categories)")
        return c

    def assets_near(self, kind: str, x: float, y: float, radius: float,
                    k: int = NEIGHBOURS) -> list[tuple[dict[str, Any], float]]:
        """Assets of a kind within radius metres of a metric point, nearest first."""
        s = self.assets.get(kind)
        if s is None or radius <= 0:
            return []
        kk = min(k, len(s))
        d, i = s.tree.query([x, y], k=kk, distance_upper_bound=radius)
        d, i = np.atleast_1d(d), np.atleast_1d(i)
        return [(s.row(int(j), self.dept_codes), float(dd))
                for dd, j in zip(d, i, strict=True) if np.isfinite(dd)]

    def areas_covering(self, lon: float, lat: float) -> list[dict[str, Any]]:
        """Ownership areas covering the point, highest priority first."""
        if self.area_tree is None:
            return []
        idx = self.area_tree.query(shapely.Point(lon, lat), predicate="intersects")
        found = [self.areas[int(i)] for i in idx]
        return sorted(found, key=lambda a: (-a["priority"], a["code"]))

    def on_duty(self, grid_code: str | None, when: datetime, tz: ZoneInfo
                ) -> list[dict[str, Any]]:
        """Patrol teams assigned to the grid whose shift covers the local time."""
        if grid_code is None:
            return []
        local = when.astimezone(tz)
        wd, now_t = local.isoweekday(), local.time()
        yesterday = 7 if wd == 1 else wd - 1
        out = []
        for s in self.shifts.get(grid_code, []):
            if _covers(s["start_time"], s["end_time"], now_t, wd, yesterday, s["weekdays"]):
                team = self.teams.get(s["team_code"], {})
                out.append({"team": s["team_code"], "name": team.get("name"),
                            "department": team.get("department_code"), "shift": s["shift"],
                            "from": s["start_time"].isoformat(timespec="minutes"),
                            "to": s["end_time"].isoformat(timespec="minutes"),
                            "members": team.get("members", [])})
        return out


def _or(value: float | None, default: float) -> float:
    """A category's own setting, else the server's default."""
    return float(default if value is None else value)


def _covers(start: time, end: time, now: time, wd: int, yesterday: int,
            weekdays: list[int]) -> bool:
    """Does a shift (possibly wrapping past midnight) cover a local time?"""
    if start <= end:
        return wd in weekdays and start <= now < end
    return (wd in weekdays and now >= start) or (yesterday in weekdays and now < end)


def _applies(area: dict[str, Any], cat: dict[str, Any]) -> bool:
    kinds = cat["area_kinds"] or []
    if kinds and area["kind"] not in kinds:
        return False
    targets = area["applies_to"] or []
    return not targets or any(cat["code"].startswith(t) for t in targets)


def resolve_owner(snap: Snapshot, lon: float, lat: float, category_code: str,
                  chain: list[dict[str, Any]], settings: Settings,
                  when: datetime | None = None) -> dict[str, Any]:
    """The owner of a point for a category, with every rule tried and why it won or lost."""
    cat = snap.category(category_code)
    when = when or snap.at
    tz = ZoneInfo(settings.timezone)
    grid = chain[-1]["code"] if chain else None
    street = next((u["code"] for u in chain if u.get("level") == 2), None)
    trail: list[dict[str, Any]] = []
    owner: str | None = None
    rule: str | None = None
    disputed = False
    candidates: list[dict[str, Any]] = []
    asset_out: dict[str, Any] | None = None
    area_out: dict[str, Any] | None = None
    uses = {"asset": ("asset", "area"), "area": ("area",), "category": (),
            "specialist": ()}[cat["owner_rule"]]

    # 1. asset
    if "asset" not in uses or not cat["asset_kind"]:
        trail.append({"rule": "asset", "outcome": "skipped", "candidates": [],
                      "reason": f"category {cat['code']} is not owned through an asset "
                                f"(owner_rule {cat['owner_rule']})"})
    else:
        xy = snap.asset_xy(lon, lat)
        near = ([] if xy is None else
                snap.assets_near(cat["asset_kind"], *xy, cat["snap_radius_m"]))
        cands = [_asset(a, d) for a, d in near]
        if not near:
            trail.append({"rule": "asset", "outcome": "lost", "candidates": [],
                          "reason": f"no {cat['asset_kind']} within "
                                    f"{cat['snap_radius_m']:g} m"})
        else:
            best, d0 = near[0]
            rivals = [(a, d) for a, d in near[1:] if d - d0 < settings.dispute_margin_m
                      and a["owner_department"] != best["owner_department"]]
            if rivals:
                disputed = True
                candidates = [{"department": snap.department(a["owner_department"]),
                               "via": "asset", "asset": a["code"], "distance_m": round(d, 2)}
                              for a, d in [(best, d0), *rivals]]
                trail.append({"rule": "asset", "outcome": "disputed", "candidates": cands,
                              "reason": f"{len(rivals) + 1} {cat['asset_kind']} of different "
                                        f"owners within {settings.dispute_margin_m:g} m of "
                                        "each other's distance"})
            else:
                owner, rule, asset_out = best["owner_department"], "asset", cands[0]
                trail.append({"rule": "asset", "outcome": "won", "candidates": cands,
                              "reason": f"nearest {cat['asset_kind']} {best['code']} at "
                                        f"{d0:.1f} m (radius {cat['snap_radius_m']:g} m)"})

    # 2. area
    if owner is None and not disputed:
        if "area" not in uses:
            trail.append({"rule": "area", "outcome": "skipped", "candidates": [],
                          "reason": f"category {cat['code']} is not owned through an area"})
        else:
            covering = snap.areas_covering(lon, lat)
            fits = [a for a in covering if _applies(a, cat)]
            cands = [_area(a, _applies(a, cat)) for a in covering]
            if not fits:
                why = (f"{len(covering)} area(s) cover the point but none applies to "
                       f"{cat['code']}" if covering else "no ownership area covers the point")
                trail.append({"rule": "area", "outcome": "lost", "candidates": cands,
                              "reason": why})
            else:
                top = fits[0]["priority"]
                tied = [a for a in fits if a["priority"] == top]
                owners = {a["owner_department"] for a in tied}
                if len(owners) > 1:
                    disputed = True
                    candidates = [{"department": snap.department(a["owner_department"]),
                                   "via": "area", "area": a["code"], "kind": a["kind"]}
                                  for a in tied]
                    trail.append({"rule": "area", "outcome": "disputed", "candidates": cands,
                                  "reason": f"{len(tied)} areas of different owners share "
                                            f"the top priority {top}"})
                else:
                    owner, rule, area_out = fits[0]["owner_department"], "area", cands[
                        covering.index(fits[0])]
                    trail.append({"rule": "area", "outcome": "won", "candidates": cands,
                                  "reason": f"{fits[0]['kind']} {fits[0]['code']} "
                                            f"(priority {top}) covers the point"})

    else:
        trail.append(_decided("area", owner))

    # 3. category default, 4. the grid's specialist for that department
    spec_for = snap.specialists.get(grid or "", {})
    if owner is None and not disputed:
        default = cat["default_department"]
        if cat["owner_rule"] == "specialist":
            trail.append({"rule": "category", "outcome": "skipped", "candidates": [],
                          "reason": "this category goes to the grid's specialist"})
        elif default and default in snap.departments:
            owner, rule = default, "category"
            trail.append({"rule": "category", "outcome": "won",
                          "candidates": [{"department": snap.department(default)}],
                          "reason": f"default department of {cat['code']}"})
        else:
            trail.append({"rule": "category", "outcome": "lost", "candidates": [],
                          "reason": f"default department {default!r} is not active"})
    else:
        trail.append(_decided("category", owner))
    specialist = spec_for.get(owner or cat["default_department"])
    if owner is None and not disputed:
        if specialist is not None:
            owner, rule = specialist["department"], "specialist"
            trail.append({"rule": "specialist", "outcome": "won",
                          "candidates": [specialist],
                          "reason": f"the grid's specialist for {specialist['department']}"})
        else:
            trail.append({"rule": "specialist", "outcome": "lost", "candidates": [],
                          "reason": f"grid {grid} has no specialist for "
                                    f"{cat['default_department']}" if grid
                                    else "the point lies in no grid"})
    else:
        trail.append(_decided("specialist", owner))

    # 5. territorial first-fix
    if owner is None or disputed:
        office = snap.street_office.get(street or "")
        if disputed and office:
            candidates.append({"department": snap.department(office), "via": "territorial"})
        owner, rule = office, "territorial"
        disputed = True
        trail.append({"rule": "territorial", "outcome": "won" if office else "lost",
                      "candidates": [{"department": snap.department(office)}] if office else [],
                      "reason": (f"属地兜底: the street/town office of {street} takes it first"
                                 if office else "the point lies in no street/town")})
    else:
        trail.append({"rule": "territorial", "outcome": "skipped", "candidates": [],
                      "reason": "an owner was found"})
    return {
        "category": {"code": cat["code"], "name": cat["name"], "name_en": cat["name_en"],
                     "kind": cat["kind"], "owner_rule": cat["owner_rule"],
                     "deadline_hours": cat["deadline_hours"],
                     # the duplicate rule the intake applies (the category's, else default)
                     "duplicate": {"radius_m": _or(cat.get("duplicate_radius_m"),
                                                   settings.duplicate_radius_m),
                                   "window_h": _or(cat.get("duplicate_window_h"),
                                                   settings.duplicate_window_h)}},
        "owner": snap.department(owner),
        "decided_by": rule,
        "disputed": disputed,
        "candidates": candidates,
        "asset": asset_out,
        "area": area_out,
        "specialist": spec_for.get(owner or "") if owner else None,
        "grid_leader": snap.leaders.get(grid or ""),
        "patrol": snap.on_duty(grid, when, tz),
        "at": when.isoformat(),
        "trail": trail,
    }


def _decided(rule: str, owner: str | None) -> dict[str, Any]:
    """A rule not tried because an earlier one decided or found a dispute."""
    return {"rule": rule, "outcome": "skipped", "candidates": [],
            "reason": "an earlier rule decided" if owner else "the owner is disputed"}


def _asset(a: dict[str, Any], d: float) -> dict[str, Any]:
    return {"code": a["code"], "kind": a["kind"], "name": a["name"], "distance_m": round(d, 2),
            "owner": a["owner_department"], "maintainer": a["maintainer_department"],
            "supervising": a["supervising_department"], "state": a["state"]}


def _area(a: dict[str, Any], applies: bool) -> dict[str, Any]:
    return {"code": a["code"], "kind": a["kind"], "name": a["name"],
            "owner": a["owner_department"], "priority": a["priority"], "applies": applies}


def candidate_categories(snap: Snapshot, lon: float, lat: float) -> list[str]:
    """Categories that have a candidate at the spot: an asset of their kind within their snap
    radius, or an area that covers the point and applies to them."""
    xy = snap.asset_xy(lon, lat)
    covering = snap.areas_covering(lon, lat)
    out = []
    for code, cat in sorted(snap.categories.items()):
        rule = cat["owner_rule"]
        by_asset = (rule == "asset" and bool(cat["asset_kind"]) and xy is not None
                    and bool(snap.assets_near(cat["asset_kind"], *xy, cat["snap_radius_m"],
                                              k=1)))
        by_area = rule in ("asset", "area") and any(_applies(a, cat) for a in covering)
        if by_asset or by_area:
            out.append(code)
    return out
