"""CQL2 filters (OGC API Features Part 3) turned into PostGIS SQL: the text or JSON is
parsed by the `cql2` package (a maintained parser of the standard's grammar, its errors
with line and column), then its JSON form is translated here into a WHERE clause whose
every value is a bound parameter and whose every property is a queryable of the
collection: comparisons, LIKE, IN, BETWEEN, IS NULL, AND/OR/NOT, arithmetic, CASEI, and
the spatial functions S_INTERSECTS, S_WITHIN, S_CONTAINS, S_DISJOINT, S_EQUALS,
S_TOUCHES, S_OVERLAPS, S_CROSSES on the stored geometry."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cql2
import orjson

from spatial.errors import GridopsError

COMPARE = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
ARITHMETIC = ("+", "-", "*", "/", "%", "div", "^")
SPATIAL = {"s_intersects": "ST_Intersects", "s_within": "ST_Within",
           "s_contains": "ST_Contains", "s_disjoint": "ST_Disjoint", "s_equals": "ST_Equals",
           "s_touches": "ST_Touches", "s_overlaps": "ST_Overlaps", "s_crosses": "ST_Crosses"}
GEOMETRY_NAMES = ("geometry", "geom")
MAX_DEPTH = 64


class FilterError(GridopsError, status=400, code="bad_request"):
    """A filter that cannot be read or names what the collection does not have."""


@dataclass
class Translation:
    """The WHERE clause and its parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Ctx:
    alias: str
    queryables: dict[str, str]  # name -> JSON type
    geometry: bool
    srid: int  # the filter's CRS for geometry literals
    flip: bool  # its first axis is the latitude / northing
    params: dict[str, Any] = field(default_factory=dict)

    def bind(self, v: Any) -> str:
        name = f"cq{len(self.params)}"
        self.params[name] = v
        return f":{name}"


def parse(text: str, lang: str | None) -> dict[str, Any]:
    """The filter's JSON form; 400 with the parser's own message (line, column)."""
    lang = (lang or "cql2-text").lower()
    depth = deepest = 0
    for ch in text:  # a parser's stack is not the caller's to exhaust
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise FilterError(f"filter: nested {deepest} deep; at most {MAX_DEPTH}")
    try:
        if lang == "cql2-text":
            expr = cql2.parse_text(text)
        elif lang == "cql2-json":
            expr = cql2.parse_json(text)
        else:
            raise FilterError(f"filter-lang: {lang!r} is not cql2-text or cql2-json")
        tree = expr.to_json()
    except (cql2.ParseError, cql2.ValidationError, ValueError) as e:
        raise FilterError(f"filter: cannot be read as {lang}: {e}") from None
    except BaseException as e:  # the parser's own panic (pyo3's PanicException)
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        raise FilterError(f"filter: cannot be read as {lang}: {str(e)[:200]}") from None
    if not isinstance(tree, dict):
        raise FilterError("filter: the whole filter must be a condition, not a value")
    return tree


def translate(tree: dict[str, Any], *, alias: str, queryables: dict[str, str],
              geometry: bool, srid: int = 4326, flip: bool = False) -> Translation:
    """SQL for a parsed filter on table alias `alias`."""
    ctx = _Ctx(alias, queryables, geometry, srid, flip)
    sql, kind = _node(tree, ctx)
    if kind != "boolean":
        raise FilterError("filter: the whole filter must be a condition (true or false)")
    return Translation(sql, ctx.params)


def _node(n: Any, ctx: _Ctx) -> tuple[str, str]:
    """(SQL, kind): kind is boolean, string, number, geometry, timestamp or null."""
    if isinstance(n, bool):
        return ("TRUE" if n else "FALSE"), "boolean"
    if isinstance(n, int | float):
        if not math.isfinite(n):
            raise FilterError(f"filter: {n} is not a finite number")
        return f"CAST({ctx.bind(float(n))} AS float8)", "number"
    if isinstance(n, str):
        return f"CAST({ctx.bind(n)} AS text)", "string"
    if n is None:
        return "NULL", "null"
    if isinstance(n, list):
        raise FilterError("filter: a list stands only after IN")
    if not isinstance(n, dict):
        raise FilterError(f"filter: cannot read {str(n)[:60]!r}")
    if "property" in n:
        return _property(str(n["property"]), ctx)
    if "timestamp" in n or "date" in n:
        kind = "timestamp" if "timestamp" in n else "date"
        cast = "timestamptz" if kind == "timestamp" else "date"
        return f"CAST({ctx.bind(str(n[kind]))} AS {cast})", "timestamp"
    if "bbox" in n:
        return _bbox(n["bbox"], ctx), "geometry"
    if "type" in n and ("coordinates" in n or "geometries" in n):
        return _geometry(n, ctx), "geometry"
    op = str(n.get("op", "")).lower()
    args = n.get("args", [])
    if not isinstance(args, list):
        raise FilterError(f"filter: {op}: its arguments must be a list")
    return _op(op, args, ctx)


def _property(name: str, ctx: _Ctx) -> tuple[str, str]:
    if name in GEOMETRY_NAMES:
        if not ctx.geometry:
            raise FilterError(f"filter: {name}: this collection has no geometry")
        return f"{ctx.alias}.geom", "geometry"
    typ = ctx.queryables.get(name)
    if typ is None:
        raise FilterError(f"filter: {name!r} is not a queryable; queryables are "
                          f"{', '.join([*ctx.queryables, 'geometry'])}")
    col = f"{ctx.alias}.{name}"
    if typ == "string":
        return f"CAST({col} AS text)", "string"
    if typ == "boolean":
        return col, "boolean"
    return f"CAST({col} AS float8)", "number"


def _bbox(b: Any, ctx: _Ctx) -> str:
    if not isinstance(b, list) or len(b) not in (4, 6) or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in b):
        raise FilterError("filter: BBOX takes 4 (or 6) finite numbers")
    a0, b0, a1, b1 = (b[0], b[1], b[3], b[4]) if len(b) == 6 else b
    x0, y0, x1, y1 = (b0, a0, b1, a1) if ctx.flip else (a0, b0, a1, b1)
    if x0 > x1 or y0 > y1:
        raise FilterError("filter: BBOX's lower corner must come first")
    env = (f"ST_MakeEnvelope({ctx.bind(float(x0))}, {ctx.bind(float(y0))}, "
           f"{ctx.bind(float(x1))}, {ctx.bind(float(y1))}, {int(ctx.srid)})")
    if ctx.srid == 4326:
        return env
    return (f"ST_Transform(ST_Segmentize({env}, "
            f"{ctx.bind(max(x1 - x0, y1 - y0) / 64 + 1e-9)}), 4326)")


def _geometry(g: dict[str, Any], ctx: _Ctx) -> str:
    sql = f"ST_SetSRID(ST_GeomFromGeoJSON({ctx.bind(orjson.dumps(g).decode())}), {int(ctx.srid)})"
    if ctx.flip:
        sql = f"ST_FlipCoordinates({sql})"
    if ctx.srid != 4326:
        sql = f"ST_Transform({sql}, 4326)"
    return f"ST_MakeValid({sql})"


def _need(op: str, args: list[Any], n: int) -> None:
    if len(args) != n:
        raise FilterError(f"filter: {op} takes {n} argument(s), got {len(args)}")


def _same(op: str, a: tuple[str, str], b: tuple[str, str]) -> None:
    """Both sides of a comparison of one kind (a literal null compares with anything)."""
    if "null" in (a[1], b[1]) or a[1] == b[1]:
        return
    if {a[1], b[1]} == {"string", "number"}:
        raise FilterError(f"filter: {op} compares text with a number; quote the number "
                          "('010101') when the property is text")
    raise FilterError(f"filter: {op} compares a {a[1]} with a {b[1]}")


def _op(op: str, args: list[Any], ctx: _Ctx) -> tuple[str, str]:
    nodes: Callable[[], list[tuple[str, str]]] = lambda: [_node(a, ctx) for a in args]  # noqa: E731
    if op in ("and", "or"):
        parts = nodes()
        if len(parts) < 2 or any(k != "boolean" for _, k in parts):
            raise FilterError(f"filter: {op.upper()} joins two or more conditions")
        return "(" + f" {op.upper()} ".join(s for s, _ in parts) + ")", "boolean"
    if op == "not":
        _need(op, args, 1)
        s, k = _node(args[0], ctx)
        if k != "boolean":
            raise FilterError("filter: NOT takes a condition")
        return f"(NOT {s})", "boolean"
    if op in COMPARE:
        _need(op, args, 2)
        a, b = nodes()
        _same(op, a, b)
        return f"({a[0]} {COMPARE[op]} {b[0]})", "boolean"
    if op == "like":
        _need(op, args, 2)
        a, b = nodes()
        if a[1] != "string" or b[1] != "string":
            raise FilterError("filter: LIKE compares text")
        return f"({a[0]} LIKE {b[0]})", "boolean"
    if op == "between":
        _need(op, args, 3)
        a, lo, hi = nodes()
        _same(op, a, lo)
        _same(op, a, hi)
        return f"({a[0]} BETWEEN {lo[0]} AND {hi[0]})", "boolean"
    if op == "in":
        _need(op, args, 2)
        if not isinstance(args[1], list) or not args[1]:
            raise FilterError("filter: IN takes a non-empty list")
        a = _node(args[0], ctx)
        items = [_node(v, ctx) for v in args[1]]
        for it in items:
            _same(op, a, it)
        return f"({a[0]} IN ({', '.join(s for s, _ in items)}))", "boolean"
    if op == "isnull":
        _need(op, args, 1)
        s, _ = _node(args[0], ctx)
        return f"({s} IS NULL)", "boolean"
    if op in ("casei", "accenti"):
        _need(op, args, 1)
        s, k = _node(args[0], ctx)
        if k != "string":
            raise FilterError(f"filter: {op.upper()} takes text")
        return (f"lower({s})" if op == "casei" else s), "string"
    if op in ARITHMETIC:
        parts = nodes()
        if op == "-" and len(parts) == 1 and parts[0][1] == "number":
            return f"(- {parts[0][0]})", "number"
        _need(op, args, 2)
        if any(k != "number" for _, k in parts):
            raise FilterError(f"filter: {op} takes numbers")
        x, y = parts[0][0], parts[1][0]
        # a zero divisor gives NULL (no row), an overflow is the caller's 400 (layers.ogc)
        sql = {"+": f"({x} + {y})", "-": f"({x} - {y})", "*": f"({x} * {y})",
               "/": f"({x} / NULLIF({y}, 0))", "^": f"power({x}, {y})",
               "div": f"floor({x} / NULLIF({y}, 0))",
               "%": f"CAST(mod(CAST({x} AS numeric), NULLIF(CAST({y} AS numeric), 0)) "
                    "AS float8)"}[op]
        return sql, "number"
    if op in SPATIAL:
        _need(op, args, 2)
        a, b = nodes()
        if a[1] != "geometry" or b[1] != "geometry":
            raise FilterError(f"filter: {op.upper()} takes two geometries")
        pre = f"{a[0]} && {b[0]} AND " if op in ("s_intersects", "s_within", "s_contains",
                                                  "s_equals", "s_touches", "s_overlaps",
                                                  "s_crosses") else ""
        return f"({pre}{SPATIAL[op]}({a[0]}, {b[0]}))", "boolean"
    raise FilterError(f"filter: {op!r} is not supported; the operators are comparisons, "
                      "LIKE, IN, BETWEEN, IS NULL, AND, OR, NOT, arithmetic, CASEI and "
                      f"{', '.join(k.upper() for k in SPATIAL)}")
