"""A pending draft generation is invisible to every "current" read: the question the house
issue asked (do rows with a null generation_high leak a draft?) answered against PostGIS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from shapely import box
from sqlalchemy import text
from sqlalchemy.orm import Session

from layers import grids, responsibility, versioning
from layers.ownership_store import load_snapshot
from layers.settings import Settings
from spatial.errors import NotFound
from tests.support.tinycity import X0, Y0, D, replace, tiny_city

G1 = "319999001001001"  # its leader changes in the draft
G2_SOUTH = "319999002001002"  # split in the draft: west half keeps the code, east half is 003
NEW = "319999002001003"


def _draft(session: Session, settings: Settings) -> tuple[int, int]:
    """The tiny city active, and a draft (pending) generation that changes it."""
    g1 = grids.load_generation(session, tiny_city(), settings, label="v1")
    sx = X0 + D
    units = replace(tiny_city(), G1, leader_name="李娜")
    units = replace(units, G2_SOUTH, geometry=box(sx, Y0, sx + D / 2, Y0 + D / 2))
    units.append(grids.UnitInput(NEW, "社区2第3网格", 4, "319999002001",
                                 box(sx + D / 2, Y0, sx + D, Y0 + D / 2)))
    g2 = grids.load_generation(session, units, settings, label="draft", activate=False)
    return g1.id, g2.id


def test_a_null_generation_high_is_not_current_while_a_draft_is_pending(
        session: Session, settings: Settings) -> None:
    g1, g2 = _draft(session, settings)
    # the premise: the draft's new rows have a null high, the active rows they replace do not
    rows = session.execute(text("SELECT code, generation_low, generation_high FROM grid_unit "
                                "WHERE code IN (:a, :b) ORDER BY code, generation_low"),
                           {"a": G1, "b": NEW}).all()
    assert [tuple(r) for r in rows] == [(G1, g1, g1), (G1, g2, None), (NEW, g2, None)]
    # so "generation_high IS NULL" would be the draft; versioning.current is the active one
    current = session.execute(text(
        f"SELECT u.code, u.leader_name FROM grid_unit u WHERE {versioning.current('u')} "
        "AND u.level = 4 ORDER BY u.code")).all()
    assert [r.code for r in current] == [
        "319999001001001", "319999001001002", "319999002001001", "319999002001002"]
    assert current[0].leader_name == "张伟"
    in_draft = session.scalars(text(
        f"SELECT u.code FROM grid_unit u WHERE {versioning.in_generation('u')} AND u.level = 4 "
        "ORDER BY u.code"), {"g": g2}).all()
    assert NEW in in_draft


def test_current_reads_do_not_see_the_draft(session: Session, settings: Settings) -> None:
    _draft(session, settings)
    # the grid leader in the ownership snapshot is the active one's
    snap = load_snapshot(session, settings)
    assert snap.leaders[G1]["name"] == "张伟"
    # layer references accept current grids only
    refs = responsibility.load_refs(session)
    assert NEW not in refs.grids and G2_SOUTH in refs.grids
    # an asset in the east half of the old south grid stands in it, not in the draft's 003
    session.execute(text(
        "INSERT INTO asset (code, category_code, kind, geom, supervising_department, "
        "owner_department, maintainer_department, valid_from) VALUES ('3199990101000001', "
        "'C0101', 'manhole', ST_SetSRID(ST_MakePoint(:x, :y), 4326), 'a', 'a', 'a', now())"),
        {"x": X0 + D + 0.75 * D, "y": Y0 + D / 4})
    aid = session.scalar(text("SELECT id FROM asset WHERE code = '3199990101000001'"))
    responsibility.locate_assets(session, [aid])
    assert session.scalar(text("SELECT grid_code FROM asset WHERE id = :i"), {"i": aid}) \
        == G2_SOUTH
    # a unit's history shows what was activated, and the active row as current
    hist = grids.history(session, G1)
    assert [(h.leader_name, h.current) for h in hist] == [("张伟", True)]
    with pytest.raises(NotFound):
        grids.history(session, NEW)


def test_the_draft_is_current_once_activated(session: Session, settings: Settings) -> None:
    _, g2 = _draft(session, settings)
    draft = session.get(grids.Generation, g2)
    assert draft is not None
    grids.activate_generation(session, draft, settings)
    assert load_snapshot(session, settings).leaders[G1]["name"] == "李娜"
    assert NEW in responsibility.load_refs(session).grids
    assert [(h.leader_name, h.current) for h in grids.history(session, G1)] == [
        ("张伟", False), ("李娜", True)]
    # and the old generation is still readable by id and by time
    old = grids.generation_at(session, at=draft.activated_at - timedelta(microseconds=1))
    assert grids.get_unit(session, old.id, G1).leader_name == "张伟"
