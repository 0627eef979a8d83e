"""Bring your own city: a grid read from the files a district's GIS office holds, mapped to
gridops' units, validated in memory, optionally cleaned, and loaded as a draft generation.

Pipeline: files -> `gisfile.Table`s -> rows (field mapping) -> levels (a field, or the code's
length) -> parents (a field, the code's prefix, or the unit above that covers it) -> missing
levels above built as unions of their children -> `--snap` cleaning -> validation -> load.
A refused import raises GridInvariantError / InvalidInput and loads nothing."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely import MultiPolygon, Polygon
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import gisfile, grids
from layers.grids import UnitInput, Violation
from layers.settings import Settings
from layers.versioning import in_generation
from spatial.coverage import areal, coverage_union
from spatial.errors import GridInvariantError, InvalidInput

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

# what each target field is most often called in a GIS office's file (case-insensitive)
GUESSES: dict[str, tuple[str, ...]] = {
    "code": ("code", "gridcode", "grid_code", "gid_code", "wgbm", "bm", "编码", "网格编码",
             "代码", "区划代码", "统计用区划代码", "单元编码"),
    "name": ("name", "gridname", "grid_name", "wgmc", "mc", "名称", "网格名称", "单元名称"),
    "parent": ("parent", "parent_code", "parentcode", "pcode", "parent_cod", "sjbm",
               "上级编码", "父级编码", "所属编码"),
    "level": ("level", "level_key", "grade", "jb", "层级", "级别"),
    "leader_name": ("leader", "leader_name", "leader_nam", "wgz", "网格长", "网格长姓名"),
    "leader_phone": ("leader_tel", "leader_phone", "leader_pho", "phone", "tel", "wgzdh",
                     "网格长电话", "联系电话"),
}
TARGETS = tuple(GUESSES)


@dataclass(frozen=True)
class ImportOptions:
    """How to read the files; everything a planner may override."""

    layers: tuple[str, ...] = ()  # empty: every polygon layer of each file
    encoding: str | None = None
    crs: str | None = None
    fields: dict[str, str] = field(default_factory=dict)  # target -> the file's field
    snap_m: float | None = None
    snap_max_area_m2: float = 100.0
    label: str | None = None
    activate: bool = False
    keep_invalid: bool = False  # load a refused grid as a draft anyway, to fix it there


@dataclass
class ImportResult:
    """What an import did (or, when refused, what it found)."""

    generation: int | None
    activated: bool
    counts: dict[str, int]
    new_rows: int
    carried_over: int
    ended: int
    sources: list[dict[str, Any]]
    mapping: dict[str, str | None]
    built_levels: list[str]
    changes: list[dict[str, Any]]
    problems: list[Violation]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation, "activated": self.activated, "counts": self.counts,
            "new_rows": self.new_rows, "carried_over": self.carried_over, "ended": self.ended,
            "sources": self.sources, "mapping": self.mapping, "built_levels": self.built_levels,
            "changes": self.changes, "problems": [v.as_dict() for v in self.problems],
            "problem_counts": dict(Counter(v.kind for v in self.problems)),
            "notes": self.notes,
        }


@dataclass
class _Row:
    code: str
    name: str | None
    level: int | None
    level_raw: Any
    parent: str | None
    geometry: MultiPolygon
    leader_name: str | None
    leader_phone: str | None
    attributes: dict[str, Any]
    where: str
    ancestor_names: dict[int, str]


def _nothing(stage: str, done: int, total: int) -> None:
    return None


# ---------------------------------------------------------------- reading and mapping


def read_sources(paths: Sequence[str | Path], opts: ImportOptions,
                 names: Sequence[str] | None = None) -> list[gisfile.Table]:
    """Every layer to import: the named ones, else each file's polygon layers."""
    tables: list[gisfile.Table] = []
    for k, path in enumerate(paths):
        shown = names[k] if names else Path(path).name
        if opts.layers:
            wanted: Sequence[str | None] = opts.layers
        else:
            found = gisfile.list_layers(path)
            polys = [n for n, t in found if t and "POLYGON" in t.upper()]
            wanted = polys or [None]
        have = {n for n, _ in gisfile.list_layers(path)}
        for layer in wanted:
            if opts.layers and layer not in have:
                continue
            tables.append(gisfile.read_table(path, layer=layer, encoding=opts.encoding,
                                             crs=opts.crs, display_name=shown))
    if opts.layers:
        got = {t.layer for t in tables}
        missing = [n for n in opts.layers if n not in got]
        if missing:
            raise InvalidInput(f"no layer {', '.join(map(repr, missing))} in "
                               f"{', '.join(str(Path(p).name) for p in paths)}")
    if not tables:
        raise InvalidInput("no layer to import")
    return tables


def guess_mapping(columns: Sequence[str], overrides: dict[str, str]) -> dict[str, str | None]:
    """target -> the file's column: overrides first, then the common names."""
    unknown = set(overrides) - set(TARGETS) - {f"name{r}" for r in range(1, 10)}
    if unknown:
        raise InvalidInput(f"field mapping: unknown target(s) {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(TARGETS)}")
    lower = {c.lower(): c for c in columns}
    out: dict[str, str | None] = {}
    for target in TARGETS:
        if target in overrides:
            col = overrides[target]
            if col not in columns and col.lower() not in lower:
                raise InvalidInput(f"field mapping: {target}={col!r} is not a field of the "
                                   f"file; its fields are {', '.join(columns)}")
            out[target] = col if col in columns else lower[col.lower()]
            continue
        out[target] = next((lower[g.lower()] for g in GUESSES[target] if g.lower() in lower),
                           None)
    return out


def _ancestor_name_columns(columns: Sequence[str], level_pairs: Sequence[tuple[str, str]],
                           overrides: dict[str, str]) -> dict[int, str]:
    """Columns holding the names of a row's ancestors (e.g. 社区名称 for the community a grid
    lies in): `{key}_name`, `{level name}名称`, or `name{rank}=` in the mapping."""
    lower = {c.lower(): c for c in columns}
    out: dict[int, str] = {}
    extra = {"街镇": ("街道名称", "镇名称", "街道", "乡镇名称"),
             "居村": ("社区名称", "居委名称", "村居名称", "社区")}
    for rank, (key, name) in enumerate(level_pairs, start=1):
        given = overrides.get(f"name{rank}")
        if given:
            out[rank] = given
            continue
        for cand in (f"{key}_name", f"{key}name", f"{name}名称", *extra.get(name, ())):
            if cand.lower() in lower:
                out[rank] = lower[cand.lower()]
                break
    return out


def _text(v: Any) -> str | None:
    """A field value as text: integral floats (a code stored as Real) lose their '.0'."""
    if v is None:
        return None
    if isinstance(v, float):
        if not np.isfinite(v):
            return None
        if v.is_integer():
            return str(int(v))
    s = str(v).strip()
    if s.endswith(".0") and s[:-2].isdigit():  # a code that went through a spreadsheet
        s = s[:-2]
    return s or None


def _as_multi(g: Any) -> MultiPolygon | None:
    if isinstance(g, MultiPolygon):
        return g
    if isinstance(g, Polygon):
        return MultiPolygon([g])
    return None


def table_rows(t: gisfile.Table, mapping: dict[str, str | None],
               names_cols: dict[int, str]) -> tuple[list[_Row], list[str]]:
    """The table's features as rows; problems (no code, not a polygon) as messages."""
    problems: list[str] = []
    rows: list[_Row] = []
    if mapping["code"] is None:
        raise InvalidInput(f"{t.source} layer {t.layer!r}: no code field (looked for "
                           f"{', '.join(GUESSES['code'][:6])}...); its fields are "
                           f"{', '.join(t.fields) or 'none'}: name one with --field code=FIELD")
    used = {c for c in mapping.values() if c} | set(names_cols.values())
    others = [c for c in t.fields if c not in used]
    for i in range(len(t)):
        where = f"{t.source} layer {t.layer!r} feature #{i + 1}"
        code = _text(t.value(mapping["code"], i))
        if code is None:
            problems.append(f"{where}: no code")
            continue
        if not (code.isascii() and code.isdigit() and len(code) <= 32):
            problems.append(f"{where}: code {code[:40]!r} must be 1 to 32 digits")
            continue
        g = t.geometry[i]
        multi = _as_multi(g)
        if multi is None:
            kind = "no geometry" if g is None else f"a {g.geom_type}"
            problems.append(f"{where} (code {code}): {kind}, a grid unit must be a polygon")
            continue
        lv_raw = t.value(mapping["level"], i) if mapping["level"] else None
        attrs = {c: t.value(c, i) for c in others}
        rows.append(_Row(
            code=code,
            name=_text(t.value(mapping["name"], i)) if mapping["name"] else None,
            level=None,
            level_raw=lv_raw,
            parent=_text(t.value(mapping["parent"], i)) if mapping["parent"] else None,
            geometry=multi,
            leader_name=_text(t.value(mapping["leader_name"], i))
            if mapping["leader_name"] else None,
            leader_phone=_text(t.value(mapping["leader_phone"], i))
            if mapping["leader_phone"] else None,
            attributes={k: v for k, v in attrs.items() if v is not None},
            where=where,
            ancestor_names={r: n for r, c in names_cols.items()
                            if (n := _text(t.value(c, i))) is not None},
        ))
    return rows, problems


# ---------------------------------------------------------------- levels and parents


def _level_of(raw: Any, level_pairs: Sequence[tuple[str, str]]) -> int | None:
    s = _text(raw)
    if s is None:
        return None
    for rank, (key, name) in enumerate(level_pairs, start=1):
        if s in (str(rank), key, name) or s.lower() == key.lower():
            return rank
    return None


def assign_levels(rows: list[_Row], level_pairs: Sequence[tuple[str, str]],
                  lengths: dict[int, int | None]) -> list[str]:
    """Each row's level from its level field, else from its code's length."""
    by_len: dict[int, int] = {n: r for r, n in lengths.items() if n}
    known = ", ".join(f"{k}={r}" for r, (k, _) in enumerate(level_pairs, start=1))
    problems: list[str] = []
    for row in rows:
        if row.level_raw is not None:
            lv = _level_of(row.level_raw, level_pairs)
            if lv is None:
                problems.append(f"{row.where} (code {row.code}): level {row.level_raw!r} is "
                                f"not one of {known}")
            row.level = lv
            continue
        lv = by_len.get(len(row.code))
        if lv is None:
            shown = ", ".join(f"{level_pairs[r - 1][0]} {n}" for r, n in sorted(lengths.items())
                              if n) or "none"
            problems.append(f"{row.where}: code {row.code} has {len(row.code)} characters, "
                            f"which is no level's code length ({shown}); give a level field "
                            "(--field level=FIELD) or set GRIDOPS_CODE_LENGTHS")
        row.level = lv
    return problems


def assign_parents(rows: list[_Row], lengths: dict[int, int | None]) -> None:
    """A row without a parent field takes the unit above it: by code prefix when that level
    has a fixed code length and the prefix is a unit, else the unit that covers it."""
    by_level: dict[int, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.level is not None:
            by_level[r.level].append(r)
    for lv, members in sorted(by_level.items()):
        if lv == 1:
            continue
        above = by_level.get(lv - 1, [])
        codes_above = {r.code for r in above}
        plen = lengths.get(lv - 1)
        orphans: list[_Row] = []
        for r in members:
            if r.parent is not None:
                continue
            if plen and r.code[:plen] in codes_above:
                r.parent = r.code[:plen]
            else:
                orphans.append(r)
        if orphans and above:
            tree = shapely.STRtree([r.geometry for r in above])
            pts = shapely.point_on_surface([r.geometry for r in orphans])
            src, dst = tree.query(pts, predicate="within")
            for i, j in zip(src, dst, strict=True):
                if orphans[int(i)].parent is None:
                    orphans[int(i)].parent = above[int(j)].code
        for r in orphans:
            if r.parent is None and plen and lv - 1 not in by_level:
                r.parent = r.code[:plen]  # the level above is built from the prefixes


def build_missing_levels(rows: list[_Row], level_pairs: Sequence[tuple[str, str]],
                         lengths: dict[int, int | None], progress: Progress) -> list[str]:
    """Levels the files do not hold, built as unions of their children (finest upwards)."""
    present = {r.level for r in rows if r.level is not None}
    if not present:
        return []
    finest = len(level_pairs)
    if finest not in present:
        raise InvalidInput(f"the files hold no unit of the finest level "
                           f"({level_pairs[-1][0]}): levels found "
                           f"{', '.join(level_pairs[r - 1][0] for r in sorted(present))}")
    built: list[str] = []
    for lv in range(finest - 1, 0, -1):
        if lv in present:
            continue
        plen = lengths.get(lv)
        if not plen:
            raise InvalidInput(f"the files hold no {level_pairs[lv - 1][0]} units and that "
                               "level has no fixed code length to build them from the codes "
                               "below; add them to the files")
        children = [r for r in rows if r.level == lv + 1]
        groups: dict[str, list[_Row]] = defaultdict(list)
        for c in children:
            if c.parent is None:
                c.parent = c.code[:plen]
            groups[c.parent].append(c)
        progress(f"building {level_pairs[lv - 1][0]} units", 0, len(groups))
        for n, (code, kids) in enumerate(sorted(groups.items())):
            geom = _union([k.geometry for k in kids])
            name = next((k.ancestor_names[lv] for k in kids if lv in k.ancestor_names), code)
            rows.append(_Row(code=code, name=name, level=lv, level_raw=None,
                             parent=code[:lengths[lv - 1] or 0] if lv > 1 and lengths.get(lv - 1)
                             else None,
                             geometry=geom, leader_name=None, leader_phone=None,
                             attributes={}, where=f"built {level_pairs[lv - 1][0]} {code}",
                             ancestor_names=kids[0].ancestor_names))
            if n % 200 == 0:
                progress(f"building {level_pairs[lv - 1][0]} units", n, len(groups))
        present.add(lv)
        built.append(level_pairs[lv - 1][0])
    return built


def _union(geoms: Sequence[MultiPolygon]) -> MultiPolygon:
    u = areal(coverage_union(geoms))
    return u if isinstance(u, MultiPolygon) else MultiPolygon([u])


# ---------------------------------------------------------------- the whole import


def prepare(tables: Sequence[gisfile.Table], opts: ImportOptions, settings: Settings,
            progress: Progress = _nothing) -> tuple[list[UnitInput], ImportResult]:
    """Files -> units ready to load, with the cleaning's changes and the validation's
    problems (refused rows raise InvalidInput at once: nothing of them can be loaded)."""
    pairs = settings.level_pairs()
    lengths = settings.code_length_map()
    rows: list[_Row] = []
    problems: list[str] = []
    sources: list[dict[str, Any]] = []
    mapping: dict[str, str | None] = {}
    notes: list[str] = []
    for t in tables:
        mapping = guess_mapping(list(t.fields), opts.fields)
        names_cols = _ancestor_name_columns(list(t.fields), pairs, opts.fields)
        got, bad = table_rows(t, mapping, names_cols)
        rows.extend(got)
        problems.extend(bad)
        sources.append({"file": t.source, "layer": t.layer, "features": len(t), "crs": t.crs,
                        "encoding": t.encoding, "mapping": mapping})
        notes.extend(f"{t.source} layer {t.layer!r}: {n}" for n in t.notes)
    progress("mapping fields", len(rows), len(rows))
    problems.extend(assign_levels(rows, pairs, lengths))
    _refuse_rows(problems)
    assign_parents(rows, lengths)
    built = build_missing_levels(rows, pairs, lengths, progress)
    assign_parents(rows, lengths)
    for r in rows:
        if r.name is None:
            r.name = r.ancestor_names.get(r.level or 0) or r.code
    changes: list[dict[str, Any]] = []
    if opts.snap_m is not None:
        changes, refused = _clean(rows, built, opts, settings, pairs, progress)
        if refused:
            raise _refused(refused, f"snapping at {opts.snap_m} m cannot clean "
                                    f"{len(refused)} problem(s) larger than "
                                    f"{opts.snap_max_area_m2} m², nothing was loaded")
    units = [UnitInput(code=r.code, name=r.name or r.code, level=int(r.level or 0),
                       parent_code=r.parent, geometry=r.geometry, leader_name=r.leader_name,
                       leader_phone=r.leader_phone, attributes=r.attributes) for r in rows]
    units.sort(key=lambda u: (u.level, u.code))
    progress("validating", 0, len(units))
    found = grids.validate_units(units, settings)
    progress("validating", len(units), len(units))
    counts = dict(Counter(pairs[u.level - 1][0] for u in units))
    result = ImportResult(generation=None, activated=False, counts=counts, new_rows=0,
                          carried_over=0, ended=0, sources=sources, mapping=mapping,
                          built_levels=built, changes=changes, problems=found, notes=notes)
    return units, result


def _refuse_rows(problems: Sequence[str]) -> None:
    if problems:
        head = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InvalidInput(f"{len(problems)} feature(s) cannot be read as grid units, nothing "
                           f"was loaded: {head}{more}", extra={"problems": list(problems[:200])})


def _clean(rows: list[_Row], built: Sequence[str], opts: ImportOptions, settings: Settings,
           pairs: Sequence[tuple[str, str]], progress: Progress,
           ) -> tuple[list[dict[str, Any]], list[Violation]]:
    """--snap: each level the files hold cleaned as one coverage (GEOS CoverageCleaner);
    built levels rebuilt from their cleaned children. Nothing changes silently: every
    changed unit is listed with its area before and after."""
    from spatial import coverage

    built_ranks = {r for r, (k, _) in enumerate(pairs, start=1) if k in built}
    given = sorted({int(r.level) for r in rows if r.level and r.level not in built_ranks})
    codes = [r.code for r in rows]
    levels_ = [int(r.level or 0) for r in rows]
    parents = [r.parent for r in rows]
    cfg = grids.coverage_config(settings)
    progress("cleaning the coverage", 0, len(rows))
    cleaned = coverage.clean_coverage(codes, levels_, parents, [r.geometry for r in rows], cfg,
                                      snap_m=float(opts.snap_m or 0.0),
                                      max_area_m2=opts.snap_max_area_m2, only_levels=given)
    if cleaned.problems:
        return [], [grids.Violation.from_problem(p) for p in cleaned.problems]
    geoms = cleaned.geometries
    if built_ranks:
        geoms = coverage.rebuild_parents(codes, levels_, parents, geoms,
                                         from_level=max(levels_))
    changes = [{"level": pairs[levels_[codes.index(c.code)] - 1][0], **c.as_dict()}
               for c in cleaned.changes]
    for r, g in zip(rows, geoms, strict=True):
        if g is not r.geometry and r.level in built_ranks:
            changes.append({"code": r.code, "level": pairs[int(r.level) - 1][0],
                            "detail": "rebuilt as the union of its cleaned children"})
        r.geometry = _as_multi(g) or r.geometry
    progress("cleaning the coverage", len(rows), len(rows))
    return changes, []


def import_grid(session: Session, paths: Sequence[str | Path], opts: ImportOptions,
                settings: Settings, *, names: Sequence[str] | None = None,
                progress: Progress = _nothing) -> ImportResult:
    """Read, map, clean, validate and load a city's grid as a new generation (a draft unless
    `opts.activate`). Refused (GridInvariantError) when validation finds problems, unless
    `keep_invalid`, which loads the draft so its problems can be seen and fixed there.
    The caller owns the transaction."""
    grids.sync_levels(session, settings)
    progress("reading files", 0, len(paths))
    tables = read_sources(paths, opts, names)
    units, result = prepare(tables, opts, settings, progress)
    if result.problems and (opts.activate or not opts.keep_invalid):
        raise _refused(result.problems, None)
    label = opts.label or "import " + ", ".join(str(Path(p).name) for p in (names or paths))
    progress("loading", 0, len(units))
    before = grids.active_generation(session)
    gen = grids.load_generation(
        session, units, settings, label=label[:200], activate=opts.activate,
        note="imported from " + "; ".join(f"{s['file']}:{s['layer']}" for s in result.sources),
        validated=True)
    progress("loading", len(units), len(units))
    result.generation = gen.id
    result.activated = opts.activate
    stats = session.execute(text(
        f"SELECT count(*) FILTER (WHERE u.generation_low = :g) AS new, "
        f"count(*) FILTER (WHERE u.generation_low < :g) AS kept FROM grid_unit u "
        f"WHERE {in_generation('u')}"), {"g": gen.id}).one()
    result.new_rows, result.carried_over = int(stats.new), int(stats.kept)
    if before is not None:
        result.ended = int(session.execute(
            text("SELECT count(*) FROM grid_unit WHERE generation_high = :p"),
            {"p": before.id}).scalar_one())
    return result


def _refused(found: Sequence[Violation], headline: str | None) -> GridInvariantError:
    """The refusal: one line of counts per kind, then the first problems; every problem
    (with its geometry) in extra."""
    kinds = Counter(v.kind for v in found)
    line = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
    head = headline or f"the grid has {len(found)} problem(s), nothing was loaded"
    first = "; ".join(str(v) for v in found[:5])
    return GridInvariantError(f"{head}: {line}. First: {first}",
                              extra={"problem_counts": dict(kinds),
                                     "violations": [v.as_dict() for v in found],
                                     "problems": {"type": "FeatureCollection",
                                                  "features": [v.as_feature() for v in found]}})


