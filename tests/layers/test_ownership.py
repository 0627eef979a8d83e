"""Owner resolution: each rule winning, losing, disputes, the territorial first-fix, the
patrol on duty, and the same answer in the past."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from layers import grids
from layers.ownership import _covers, resolve_owner
from layers.ownership_store import load_snapshot
from layers.resolver import build_index
from layers.settings import Settings
from spatial.errors import InvalidInput
from tests.support import ownerfixtures as fx


@pytest.fixture()
def world(session: Session, settings: Settings, engine: Engine, demo_loaded: int
          ) -> dict:  # type: ignore[type-arg]
    gen = grids.generation_at(session, generation=demo_loaded)
    idx = build_index(session, gen, settings)
    g, _ = idx.lookup_one(*fx.P)
    chain = idx.chain(g)
    spots = fx.load(session, chain[1]["code"], chain[-1]["code"])
    snap = load_snapshot(session, settings)

    def ask(point: tuple[float, float], cat: str, when: datetime | None = None) -> dict:  # type: ignore[type-arg]
        gi, _ = idx.lookup_one(*point)
        return resolve_owner(snap, point[0], point[1], cat, idx.chain(gi), settings, when=when)

    return {"ask": ask, "spots": spots, "chain": chain, "snap": snap}


def _rules(a: dict) -> dict:  # type: ignore[type-arg]
    return {t["rule"]: t["outcome"] for t in a["trail"]}


def test_nearest_asset_wins(world) -> None:  # type: ignore[no-untyped-def]
    a = world["ask"](fx.P, "C0101")
    assert a["owner"]["code"] == "SW-GS" and a["decided_by"] == "asset"
    assert a["disputed"] is False
    assert a["asset"]["code"] == "3101170101000001" and 2.5 < a["asset"]["distance_m"] < 3.5
    assert _rules(a) == {"asset": "won", "area": "skipped", "category": "skipped",
                         "specialist": "skipped", "territorial": "skipped"}
    assert [t["rule"] for t in a["trail"]] == ["asset", "area", "category", "specialist",
                                               "territorial"]
    assert a["grid_leader"]["name"]


def test_no_asset_in_radius_falls_to_default(world) -> None:  # type: ignore[no-untyped-def]
    far = fx.offset(fx.P, 0, -300)
    a = world["ask"](far, "C0101")
    assert _rules(a)["asset"] == "lost"
    assert "no manhole_water within 10 m" in a["trail"][0]["reason"]
    assert a["owner"]["code"] == "SW-GS" and a["decided_by"] == "category"


def test_two_covers_of_different_owners_are_disputed(world) -> None:  # type: ignore[no-untyped-def]
    a = world["ask"](world["spots"]["dispute"], "C0101")
    assert a["disputed"] is True and a["decided_by"] == "territorial"
    assert a["owner"]["code"] == f"JD{world['chain'][1]['code']}"
    owners = {c["department"]["code"] for c in a["candidates"]}
    assert {"SW-GS", "SW-PS"} <= owners
    assert _rules(a)["asset"] == "disputed"


def test_area_priority_and_applicability(world) -> None:  # type: ignore[no-untyped-def]
    a = world["ask"](world["spots"]["road_and_compound"], "E0101")
    assert a["owner"]["code"] == "WY" and a["decided_by"] == "area"
    assert a["area"]["code"] == "CPD-1"
    lost = next(t for t in a["trail"] if t["rule"] == "area")
    assert {c["code"] for c in lost["candidates"]} == {"CPD-1", "ROAD-1"}
    b = world["ask"](world["spots"]["road_only"], "E0101")
    assert b["owner"]["code"] == "JT"
    # the road applies to E01 only: vending goes by category anyway
    c = world["ask"](world["spots"]["road_only"], "E0501")
    assert c["owner"]["code"] == "CGZF" and c["decided_by"] == "category"


def test_specialist_rule_and_patrol_on_duty(world) -> None:  # type: ignore[no-untyped-def]
    day = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    a = world["ask"](fx.P, "E0301", day)
    assert a["decided_by"] == "specialist" and a["owner"]["code"] == "CGZF"
    assert a["specialist"]["name"] == "王城管"
    assert [p["shift"] for p in a["patrol"]] == ["day"]
    night = datetime(2026, 11, 23, 17, 30, tzinfo=UTC)  # 01:30 next day in Shanghai
    assert [p["shift"] for p in world["ask"](fx.P, "E0301", night)["patrol"]] == ["night"]


def test_outside_every_grid_has_no_owner(world) -> None:  # type: ignore[no-untyped-def]
    a = world["ask"]((121.6, 31.2), "E0501")
    assert a["owner"]["code"] == "CGZF"  # the category's department still applies
    b = world["ask"]((121.6, 31.2), "E0301")
    assert b["owner"] is None and b["disputed"] is True


def test_unknown_category(world) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="C9999"):
        world["ask"](fx.P, "C9999")


def test_shift_windows() -> None:
    from datetime import time

    assert _covers(time(20), time(8), time(1, 30), 2, 1, [1])
    assert not _covers(time(20), time(8), time(1, 30), 2, 1, [2])
    assert _covers(time(8), time(20), time(8), 3, 2, [3])
    assert not _covers(time(8), time(20), time(20), 3, 2, [3])


def test_past_answers_use_the_layers_of_that_time(session: Session, settings: Settings,
                                                  world) -> None:  # type: ignore[no-untyped-def]
    from layers import responsibility as resp

    before = datetime.now(UTC)
    d = resp.layer("assets")
    resp.update(session, d, ["3101170101000001"], {"owner_department": "SW-PS",
                                                    "maintainer_department": "SW-PS"})
    now = load_snapshot(session, settings)
    then = load_snapshot(session, settings, at=before, near=(*fx.P, 100.0))
    chain = world["chain"]
    assert resolve_owner(now, *fx.P, "C0101", chain, settings)["owner"]["code"] == "SW-PS"
    assert resolve_owner(then, *fx.P, "C0101", chain, settings)["owner"]["code"] == "SW-GS"
