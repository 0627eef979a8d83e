"""A small, hand-made set of responsibility layers placed in the demo city, for tests that
must know exactly what lies where."""

from __future__ import annotations

from typing import Any

from shapely import Point, box
from shapely.geometry import mapping
from sqlalchemy.orm import Session

from layers import responsibility as resp

# a grid in the old town of 岳阳街道 (resolved by the index in tests)
P = (121.2277, 31.0322)
D = 1e-5  # about 1 m


def offset(p: tuple[float, float], east_m: float, north_m: float) -> tuple[float, float]:
    """A point some metres east/north of p."""
    return p[0] + east_m * D / 0.953, p[1] + north_m * D / 1.11


DEPARTMENTS = [
    ("SW-GS", "自来水公司", 3), ("SW-PS", "排水公司", 3), ("TX", "通讯公司", 3),
    ("JT", "道路养护", 2), ("WY", "物业服务企业", 3), ("CGZF", "城管执法", 1),
    ("LHSR", "绿化市容", 2),
]
CATEGORIES: list[dict[str, Any]] = [
    dict(code="C0101", kind="component", major_code="01", major_name="公用设施",
         name="上水井盖", default_department="SW-GS", deadline_hours=24, owner_rule="asset",
         asset_kind="manhole_water", snap_radius_m=10),
    dict(code="C0107", kind="component", major_code="01", major_name="公用设施",
         name="通讯井盖", default_department="TX", deadline_hours=24, owner_rule="asset",
         asset_kind="manhole_telecom", snap_radius_m=10),
    dict(code="E0101", kind="event", major_code="01", major_name="市容环境",
         name="乱倒垃圾", default_department="LHSR", deadline_hours=24, owner_rule="area",
         area_kinds=["road_red_line", "residential_compound"]),
    dict(code="E0501", kind="event", major_code="05", major_name="街面秩序",
         name="无照经营游商", default_department="CGZF", deadline_hours=4,
         owner_rule="category"),
    dict(code="E0301", kind="event", major_code="03", major_name="施工管理",
         name="违法建设", default_department="CGZF", deadline_hours=72,
         owner_rule="specialist"),
]


def load(session: Session, street: str, grid: str) -> dict[str, Any]:
    """Departments, categories, assets, areas, a specialist and a patrol around P."""
    def imp(name: str, rows: list[tuple[dict[str, Any], Any]]) -> None:
        rep = resp.import_rows(session, resp.layer(name),
                               [(i, r, g) for i, (r, g) in enumerate(rows, 1)])
        assert not rep.refused, rep.refused

    imp("departments", [({"code": c, "name": n, "tier": t}, None) for c, n, t in DEPARTMENTS]
        + [({"code": f"JD{street}", "name": "岳阳街道办事处", "tier": 1,
             "territory_code": street}, None)])
    imp("categories", [(c, None) for c in CATEGORIES])
    water = offset(P, 3, 0)
    q = offset(P, 0, 60)  # two covers of different owners 0.4 m apart: a dispute
    imp("assets", [
        (dict(code="3101170101000001", category_code="C0101", kind="manhole_water",
              supervising_department="SW-GS", owner_department="SW-GS",
              maintainer_department="SW-GS"), mapping(Point(water))),
        (dict(code="3101170101000002", category_code="C0101", kind="manhole_water",
              supervising_department="SW-GS", owner_department="SW-GS",
              maintainer_department="SW-GS"), mapping(Point(offset(q, 2, 0)))),
        (dict(code="3101170101000003", category_code="C0101", kind="manhole_water",
              supervising_department="SW-GS", owner_department="SW-PS",
              maintainer_department="SW-PS"), mapping(Point(offset(q, -2.4, 0)))),
    ])
    r = offset(P, 0, -80)
    road = box(*offset(r, -100, -10), *offset(r, 100, 10))
    compound = box(*offset(r, -20, -5), *offset(r, 20, 60))
    imp("areas", [
        (dict(code="ROAD-1", kind="road_red_line", owner_department="JT", priority=50,
              applies_to=["E01"]), mapping(road)),
        (dict(code="CPD-1", kind="residential_compound", owner_department="WY", priority=80,
              applies_to=[]), mapping(compound)),
    ])
    imp("roles", [(dict(grid_code=grid, role="specialist", name="王城管", phone="13900000000",
                        department_code="CGZF"), None)])
    imp("teams", [(dict(code="T1", name="岳阳一队", department_code="CGZF",
                        members=[{"name": "李巡", "phone": "13800000001", "role": "leader"}]),
                   None)])
    imp("assignments", [
        (dict(team_code="T1", grid_code=grid, shift="day", start_time="08:00",
              end_time="20:00"), None),
        (dict(team_code="T1", grid_code=grid, shift="night", start_time="20:00",
              end_time="08:00"), None)])
    return {"water": water, "dispute": q, "road_only": offset(r, 60, 0),
            "road_and_compound": offset(r, 0, 2)}
