"""Linkage units (联动单位) and the 部件/事件 taxonomy: shipped CSV data, validated on load."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
DEPARTMENTS_CSV = DATA_DIR / "departments.csv"
CATEGORIES_CSV = DATA_DIR / "categories.csv"

OWNER_RULES = ("asset", "area", "category", "specialist")
CATEGORY_KINDS = ("component", "event")
AREA_KINDS = (
    "road_red_line",
    "residential_compound",
    "park",
    "river",
    "campus",
    "railway",
    "industrial_park",
)
DEPARTMENT_COLUMNS = (
    "code",
    "name",
    "name_en",
    "tier",
    "parent_code",
    "contact_name",
    "contact_phone",
    "territory_code",
)
CATEGORY_COLUMNS = (
    "code",
    "kind",
    "major_code",
    "major_name",
    "major_name_en",
    "name",
    "name_en",
    "default_department",
    "deadline_hours",
    "owner_rule",
    "asset_kind",
    "area_kinds",
    "snap_radius_m",
    "duplicate_radius_m",
    "duplicate_window_h",
)
_DEPARTMENT_CODE = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$")
_CATEGORY_CODE = re.compile(r"^[CE][0-9]{4}$")
_ASSET_KIND = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class DepartmentSpec:
    """A linkage unit: a bureau, a company or a street/town office, in tiers 1-3."""

    code: str
    name: str
    name_en: str
    tier: int
    parent_code: str | None
    contact_name: str
    contact_phone: str
    territory_code: str | None  # the 9-digit street code for street/town offices


@dataclass(frozen=True)
class CategorySpec:
    """A minor class of the taxonomy with its deadline and the rule that finds its owner."""

    code: str  # C|E + 2-digit major + 2-digit minor
    kind: str  # component | event
    major_code: str  # C01..C06, E01..E06
    major_name: str
    major_name_en: str
    name: str
    name_en: str
    default_department: str
    deadline_hours: int
    owner_rule: str  # asset | area | category | specialist
    asset_kind: str | None  # set iff owner_rule == "asset"
    area_kinds: tuple[str, ...]  # area kinds whose owner answers, for owner_rule == "area"
    snap_radius_m: float
    duplicate_radius_m: float | None = None  # None: the server's default
    duplicate_window_h: float | None = None


def _read_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Read a UTF-8 CSV with exactly ``columns``; return (line number, stripped row) pairs."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != columns:
            raise ValueError(f"{path.name}: columns must be {','.join(columns)}")
        rows = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{path.name} line {reader.line_num}: wrong number of fields")
            rows.append((reader.line_num, {k: v.strip() for k, v in row.items()}))
    return rows


def _where(path: Path, line: int, code: str) -> str:
    """Name a row in an error message."""
    return f"{path.name} line {line} ({code or 'no code'})"


def _int(value: str, what: str, where: str) -> int:
    """Parse an integer field or raise naming the row."""
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{where}: {what} {value!r} is not an integer") from None


def _optional_float(value: str, what: str, where: str, lo: float, hi: float) -> float | None:
    """An optional number in [lo, hi] (empty = None) or raise naming the row."""
    if not value:
        return None
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"{where}: {what} {value!r} is not a number") from None
    if not lo <= x <= hi:
        raise ValueError(f"{where}: {what} {x:g} must be {lo:g}..{hi:g}")
    return x


def load_departments(path: Path | None = None) -> list[DepartmentSpec]:
    """Read and validate the linkage units (unique codes, tiers 1-3, known parents)."""
    path = path or DEPARTMENTS_CSV
    out: list[DepartmentSpec] = []
    lines: dict[str, str] = {}
    for line, r in _read_rows(path, DEPARTMENT_COLUMNS):
        where = _where(path, line, r["code"])
        if not _DEPARTMENT_CODE.match(r["code"]):
            raise ValueError(f"{where}: code must be uppercase ASCII letters, digits and '-'")
        if r["code"] in lines:
            raise ValueError(f"{where}: duplicate code {r['code']}")
        if not r["name"]:
            raise ValueError(f"{where}: name is empty")
        tier = _int(r["tier"], "tier", where)
        if tier not in (1, 2, 3):
            raise ValueError(f"{where}: tier {tier} is not 1, 2 or 3")
        territory = r["territory_code"] or None
        if territory is not None and not re.fullmatch(r"[0-9]{6,15}", territory):
            raise ValueError(f"{where}: territory_code {territory!r} is not a unit code")
        lines[r["code"]] = where
        out.append(
            DepartmentSpec(
                code=r["code"],
                name=r["name"],
                name_en=r["name_en"],
                tier=tier,
                parent_code=r["parent_code"] or None,
                contact_name=r["contact_name"],
                contact_phone=r["contact_phone"],
                territory_code=territory,
            )
        )
    for d in out:
        if d.parent_code is not None and (d.parent_code not in lines or d.parent_code == d.code):
            raise ValueError(f"{lines[d.code]}: parent_code {d.parent_code} is not a department")
    _check_acyclic(out, lines)
    return out


def _check_acyclic(departments: Iterable[DepartmentSpec], lines: dict[str, str]) -> None:
    """Raise if following parent codes ever loops."""
    parent = {d.code: d.parent_code for d in departments}
    for code in parent:
        seen = {code}
        p = parent[code]
        while p is not None:
            if p in seen:
                raise ValueError(f"{lines[code]}: parent chain loops through {p}")
            seen.add(p)
            p = parent[p]


def load_categories(
    path: Path | None = None, departments: Iterable[DepartmentSpec] | None = None
) -> list[CategorySpec]:
    """Read and validate the taxonomy against the departments (shipped ones by default)."""
    path = path or CATEGORIES_CSV
    known = {d.code for d in (load_departments() if departments is None else departments)}
    out: list[CategorySpec] = []
    codes: set[str] = set()
    asset_kinds: dict[str, str] = {}
    for line, r in _read_rows(path, CATEGORY_COLUMNS):
        code = r["code"]
        where = _where(path, line, code)
        if not _CATEGORY_CODE.match(code):
            raise ValueError(f"{where}: code must be C or E followed by 4 digits")
        if code in codes:
            raise ValueError(f"{where}: duplicate code {code}")
        kind = r["kind"]
        if kind not in CATEGORY_KINDS or code[0] != kind[0].upper():
            raise ValueError(f"{where}: kind {kind!r} does not match the code")
        if r["major_code"] != code[:3]:
            raise ValueError(f"{where}: major_code {r['major_code']!r} must be {code[:3]}")
        if not r["name"] or not r["major_name"]:
            raise ValueError(f"{where}: name and major_name are required")
        if r["default_department"] not in known:
            raise ValueError(f"{where}: default_department {r['default_department']!r} unknown")
        hours = _int(r["deadline_hours"], "deadline_hours", where)
        if hours <= 0:
            raise ValueError(f"{where}: deadline_hours must be positive")
        rule = r["owner_rule"]
        if rule not in OWNER_RULES:
            raise ValueError(f"{where}: owner_rule {rule!r} is not one of {OWNER_RULES}")
        asset_kind = r["asset_kind"] or None
        if (asset_kind is not None) != (rule == "asset"):
            raise ValueError(f"{where}: asset_kind is required iff owner_rule is asset")
        if asset_kind is not None:
            if kind != "component" or not _ASSET_KIND.match(asset_kind):
                raise ValueError(f"{where}: asset_kind {asset_kind!r} is not a component kind")
            if asset_kind in asset_kinds:
                raise ValueError(f"{where}: asset_kind {asset_kind} already used by "
                                 f"{asset_kinds[asset_kind]}")
            asset_kinds[asset_kind] = code
        area_kinds = tuple(k for k in r["area_kinds"].split("|") if k)
        if bad := [k for k in area_kinds if k not in AREA_KINDS]:
            raise ValueError(f"{where}: unknown area kinds {bad}")
        if bool(area_kinds) != (rule == "area"):
            raise ValueError(f"{where}: area_kinds are required iff owner_rule is area")
        try:
            snap = float(r["snap_radius_m"] or 0)
        except ValueError:
            msg = f"{where}: snap_radius_m {r['snap_radius_m']!r} is not a number"
            raise ValueError(msg) from None
        if not 0 <= snap <= 1000 or (rule != "asset" and snap != 0):
            raise ValueError(f"{where}: snap_radius_m must be 0..1000 and 0 unless asset rule")
        dup_r = _optional_float(r["duplicate_radius_m"], "duplicate_radius_m", where, 0, 1000)
        dup_h = _optional_float(r["duplicate_window_h"], "duplicate_window_h", where, 0, 720)
        if dup_h == 0:
            raise ValueError(f"{where}: duplicate_window_h must be more than 0")
        codes.add(code)
        out.append(
            CategorySpec(
                code=code,
                kind=kind,
                major_code=r["major_code"],
                major_name=r["major_name"],
                major_name_en=r["major_name_en"],
                name=r["name"],
                name_en=r["name_en"],
                default_department=r["default_department"],
                deadline_hours=hours,
                owner_rule=rule,
                asset_kind=asset_kind,
                area_kinds=area_kinds,
                snap_radius_m=snap,
                duplicate_radius_m=dup_r,
                duplicate_window_h=dup_h,
            )
        )
    return out
