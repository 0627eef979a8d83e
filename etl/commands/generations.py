"""`gridops generations ...`: the planners' drafts from the command line, mirroring the API
(POST /generations, its edits, validation, impact, activation). Every command that changes
something is a dry run unless --commit, as MapIt's generation commands are: it runs for
real inside a transaction, prints what it did, and rolls back."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from etl.commands.common import err, fail, load_settings, out

app = typer.Typer(help="Planners' drafts of the grid: make, edit, check, preview, activate.",
                  no_args_is_help=True)

Commit = Annotated[bool, typer.Option("--commit", help="keep the change (default: a dry "
                                      "run that shows what it would do)")]
Actor = Annotated[str | None, typer.Option(help="who does it, for the audit log (default: "
                                           "cli:<login>)")]
Crs = Annotated[str | None, typer.Option(help="the CRS of the geometries given "
                                         "(default EPSG:4326)")]


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (a container): still an honest name
        return "cli"


@contextmanager
def _session(commit: bool) -> Iterator[Any]:
    """A session whose transaction is kept with --commit, else rolled back."""
    from layers.db import database_url, make_engine, make_sessionmaker

    s = load_settings()
    engine = make_engine(database_url(s, start=True))
    with make_sessionmaker(engine)() as session:
        tx = session.begin()
        try:
            yield session, s
        except BaseException:
            tx.rollback()
            raise
        if commit:
            tx.commit()
        else:
            tx.rollback()
            err.print("dry run: nothing was kept (add --commit to keep it)", highlight=False)


def _run(commit: bool, fn: Callable[[Any, Any], Any]) -> Any:
    """Run fn(session, settings); a gridops error prints its message (and violations)."""
    from spatial.errors import GridopsError

    try:
        with _session(commit) as (session, settings):
            return fn(session, settings)
    except GridopsError as e:
        for v in (e.extra or {}).get("violations", [])[:20]:
            loc = v.get("location")
            err.print(f"  {v['kind']} [{', '.join(v['codes'])}] {v['detail']}"
                      + (f" at {loc[0]:.6f} {loc[1]:.6f}" if loc else ""), highlight=False)
        raise fail(e.detail) from None


def _print(obj: Any) -> None:
    out.print_json(json.dumps(obj, ensure_ascii=False, default=str))


def _geometry(value: Any, crs: str | None, what: str) -> Any:
    """A geometry given as WKT, GeoJSON text (a Feature's or a FeatureCollection's first
    geometry), a file holding either, or a GeoJSON object, in crs -> lon/lat shapely."""
    import shapely

    from layers import gisfile
    from spatial.errors import InvalidGeometry

    if isinstance(value, str):
        path = Path(value)
        raw = (path.read_text(encoding="utf-8") if len(value) < 4096 and path.is_file()
               else value).strip()
        try:
            if raw.startswith("{"):
                value = json.loads(raw)
                if value.get("type") == "Feature":
                    value = value.get("geometry")
                elif value.get("type") == "FeatureCollection":
                    value = (value.get("features") or [{}])[0].get("geometry")
            else:
                value = shapely.from_wkt(raw)
        except Exception as e:
            raise InvalidGeometry(f"{what}: not WKT or GeoJSON ({type(e).__name__}: "
                                  f"{str(e)[:80]})") from None
    return gisfile.lonlat_geometry(value, crs, what)


def _edit_summary(result: Any) -> None:
    d = result.as_dict()
    for key in ("ended", "created", "changed", "parents_updated"):
        if d[key]:
            out.print(f"{key}: {', '.join(d[key])}", highlight=False)
    v = d["validation"]
    out.print(f"{d['action']} on generation {d['generation']}: valid ({v['checked_units']} "
              f"units checked in {v['took_ms']:.0f} ms)", highlight=False)


@app.command("list")
def gen_list() -> None:
    """Every generation: drafts, the active one, past ones."""
    from layers import grids

    def fn(session: Any, _s: Any) -> None:
        for g in grids.list_generations(session):
            state = "active" if g.active else ("past" if g.activated_at else "draft")
            counts = grids.counts_per_level(session, g.id)
            who = f" by {g.created_by}" if g.created_by else ""
            base = f" from {g.base_id}" if g.base_id else ""
            out.print(f"{g.id:>4}  {state:<6} {g.label}{who}{base}  "
                      + ", ".join(f"{n:,} {k}" for k, n in counts.items()), highlight=False)
    _quiet(fn)


def _quiet(fn: Callable[[Any, Any], Any]) -> Any:
    """A read: rolled back without saying 'dry run'."""
    from layers.db import database_url, make_engine, make_sessionmaker
    from spatial.errors import GridopsError

    s = load_settings()
    engine = make_engine(database_url(s, start=True))
    try:
        with make_sessionmaker(engine)() as session:
            return fn(session, s)
    except GridopsError as e:
        raise fail(e.detail) from None


@app.command("create")
def gen_create(
    from_generation: Annotated[int | None, typer.Option("--from", help="make it from this "
                                                        "generation (a rollback); default "
                                                        "the active one")] = None,
    label: Annotated[str | None, typer.Option()] = None,
    note: Annotated[str, typer.Option()] = "",
    actor: Actor = None, commit: Commit = False,
) -> None:
    """Make a draft (one at a time)."""
    from layers import drafts

    def fn(session: Any, s: Any) -> None:
        gen = drafts.create_draft(session, s, actor=_actor(actor), base_id=from_generation,
                                  label=label, note=note)
        out.print(f"draft generation {gen.id} ({gen.label}) made from generation "
                  f"{gen.base_id}", highlight=False)
    _run(commit, fn)


@app.command("put")
def gen_put(
    generation: Annotated[int, typer.Argument()], code: Annotated[str, typer.Argument()],
    feature: Annotated[Path, typer.Argument(help="a GeoJSON Feature: its geometry (or null) "
                                            "and the properties to change", exists=True)],
    if_match: Annotated[str | None, typer.Option(help="the unit's ETag as read; default "
                                                 "its current one (you are the only "
                                                 "writer)")] = None,
    crs: Crs = None, actor: Actor = None, commit: Commit = False,
) -> None:
    """Replace a unit's geometry and/or properties in a draft."""
    from layers import drafts

    body = json.loads(feature.read_text(encoding="utf-8"))

    def fn(session: Any, s: Any) -> None:
        geom = body.get("geometry")
        g = None if geom is None else _geometry(geom, crs, "geometry")
        tag = if_match or drafts.unit(session, generation, code).etag
        _edit_summary(drafts.put_unit(session, generation, code, s, actor=_actor(actor),
                                      if_match=tag, geometry=g,
                                      properties=body.get("properties") or {}))
    _run(commit, fn)


@app.command("split")
def gen_split(
    generation: Annotated[int, typer.Argument()], code: Annotated[str, typer.Argument()],
    line: Annotated[str | None, typer.Option(help="the cutting line: WKT, GeoJSON or a "
                                             "file")] = None,
    parts: Annotated[Path | None, typer.Option(help="or the parts: a GeoJSON "
                                               "FeatureCollection of polygons",
                                               exists=True)] = None,
    name: Annotated[list[str] | None, typer.Option("--name", help="the parts' names, in "
                                                   "serial order")] = None,
    crs: Crs = None, actor: Actor = None, commit: Commit = False,
) -> None:
    """Split a unit by a line (or into given parts): the parts get the next free codes."""
    from layers import drafts

    def fn(session: Any, s: Any) -> None:
        cut = None if line is None else _geometry(line, crs, "--line")
        polys = None
        if parts is not None:
            fc = json.loads(parts.read_text(encoding="utf-8"))
            polys = [_geometry(f.get("geometry"), crs, f"--parts #{i + 1}")
                     for i, f in enumerate(fc.get("features", []))]
        _edit_summary(drafts.split(session, generation, code, s, actor=_actor(actor),
                                   line=cut, parts=polys, names=name or None))
    _run(commit, fn)


@app.command("merge")
def gen_merge(
    generation: Annotated[int, typer.Argument()],
    codes: Annotated[list[str], typer.Argument(help="sibling codes")],
    keep: Annotated[str | None, typer.Option(help="the code the result keeps")] = None,
    name: Annotated[str | None, typer.Option()] = None,
    actor: Actor = None, commit: Commit = False,
) -> None:
    """Merge sibling units into one."""
    from layers import drafts

    _run(commit, lambda session, s: _edit_summary(drafts.merge(
        session, generation, codes, s, actor=_actor(actor), keep=keep, name=name)))


@app.command("redraw")
def gen_redraw(
    generation: Annotated[int, typer.Argument()], a: Annotated[str, typer.Argument()],
    b: Annotated[str, typer.Argument()],
    line: Annotated[str | None, typer.Option(help="the new shared boundary: WKT, GeoJSON "
                                             "or a file")] = None,
    geometry: Annotated[str | None, typer.Option(help="or the first unit's new shape")]
    = None,
    crs: Crs = None, actor: Actor = None, commit: Commit = False,
) -> None:
    """Move the boundary two units share (both follow, no gap or overlap)."""
    from layers import drafts

    def fn(session: Any, s: Any) -> None:
        _edit_summary(drafts.redraw(
            session, generation, a, b, s, actor=_actor(actor),
            line=None if line is None else _geometry(line, crs, "--line"),
            geometry=None if geometry is None else _geometry(geometry, crs, "--geometry")))
    _run(commit, fn)


@app.command("move")
def gen_move(
    generation: Annotated[int, typer.Argument()], code: Annotated[str, typer.Argument()],
    parent: Annotated[str, typer.Argument(help="the new parent's code")],
    name: Annotated[str | None, typer.Option()] = None,
    actor: Actor = None, commit: Commit = False,
) -> None:
    """Give a unit another parent: it takes a new code under it."""
    from layers import drafts

    _run(commit, lambda session, s: _edit_summary(drafts.move(
        session, generation, code, parent, s, actor=_actor(actor), name=name)))


@app.command("validate")
def gen_validate(
    generation: Annotated[int, typer.Argument()],
    problems: Annotated[Path | None, typer.Option(help="write the report as GeoJSON "
                                                  "here")] = None,
) -> None:
    """The whole validation report of a generation (exit 1 if it breaks anything)."""
    from layers import grids

    def fn(session: Any, s: Any) -> int:
        found = grids.validate_generation(session, generation, s)
        for v in found:
            out.print(str(v), highlight=False)
        if problems is not None:
            problems.write_text(json.dumps({"type": "FeatureCollection", "features": [
                v.as_feature() for v in found]}, ensure_ascii=False), encoding="utf-8")
        out.print(f"generation {generation}: {len(found)} violation(s)", highlight=False)
        return len(found)
    if _quiet(fn):
        raise typer.Exit(code=1)


@app.command("events")
def gen_events(generation: Annotated[int, typer.Argument()]) -> None:
    """The audit log of a generation's planning."""
    from layers import drafts

    def fn(session: Any, _s: Any) -> None:
        for e in drafts.events(session, generation):
            out.print(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor:<16} {e.action:<9} "
                      f"{', '.join(e.codes)[:100]}", highlight=False)
    _quiet(fn)


@app.command("impact")
def gen_impact(generation: Annotated[int, typer.Argument()]) -> None:
    """What activating the draft would change: units, open cases, assets, patrols."""
    from layers import impact

    _quiet(lambda session, s: _print(impact.impact(session, generation, s)))


@app.command("activate")
def gen_activate(
    generation: Annotated[int, typer.Argument()],
    rehome: Annotated[bool, typer.Option(help="re-resolve the open cases whose grid "
                                         "changes (default: keep their answer)")] = False,
    confirm_unpatrolled: Annotated[bool, typer.Option(help="activate even where a new grid "
                                                      "has no patrol")] = False,
    actor: Actor = None, commit: Commit = False,
) -> None:
    """Validate and activate a draft (every API worker switches)."""
    from layers import activation

    _run(commit, lambda session, s: _print(activation.activate(
        session, generation, s, actor=_actor(actor),
        open_cases="rehome" if rehome else "keep",
        confirm_unpatrolled=True if confirm_unpatrolled else ())))


@app.command("discard")
def gen_discard(generation: Annotated[int, typer.Argument()], actor: Actor = None,
                commit: Commit = False) -> None:
    """Discard a draft: its rows go, the active grid is as it was."""
    from layers import drafts, grids

    def fn(session: Any, _s: Any) -> None:
        done = grids.discard_generation(session, generation)
        drafts.record(session, generation, _actor(actor), "discard",
                      removed_rows=done["removed_rows"], restored_rows=done["restored_rows"])
        out.print(f"generation {generation} discarded: {done['removed_rows']} row(s) "
                  f"removed, {done['restored_rows']} restored", highlight=False)
    _run(commit, fn)
