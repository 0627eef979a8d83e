"""A tiny hand-made nested grid (1 + 2 + 2 + 4 units) to break in tests."""

from __future__ import annotations

from shapely import box

from layers.grids import UnitInput

X0, Y0 = 121.0, 31.0
D = 0.01  # about 1 km


def tiny_city() -> list[UnitInput]:
    """District 319999 = two streets side by side, each one community with two grids."""
    units = [UnitInput("319999", "小区", 1, None, box(X0, Y0, X0 + 2 * D, Y0 + D))]
    for s in range(2):
        sx = X0 + s * D
        street = f"319999{s + 1:03d}"
        community = f"{street}001"
        units.append(UnitInput(street, f"街道{s + 1}", 2, "319999", box(sx, Y0, sx + D, Y0 + D)))
        units.append(UnitInput(community, f"社区{s + 1}", 3, street, box(sx, Y0, sx + D, Y0 + D)))
        # serial 001 north, 002 south
        units.append(UnitInput(f"{community}001", f"社区{s + 1}第1网格", 4, community,
                               box(sx, Y0 + D / 2, sx + D, Y0 + D), leader_name="张伟",
                               leader_phone="13800000000"))
        units.append(UnitInput(f"{community}002", f"社区{s + 1}第2网格", 4, community,
                               box(sx, Y0, sx + D, Y0 + D / 2)))
    return units


def replace(units: list[UnitInput], target: str, **changes: object) -> list[UnitInput]:
    """The same list with one unit changed."""
    from dataclasses import replace as dc_replace

    return [dc_replace(u, **changes) if u.code == target else u for u in units]  # type: ignore[arg-type]


def line_moved_north() -> list[UnitInput]:
    """The tiny city with the line between community 1's grids moved 200 m north: a point
    just north of the old line now lies in grid 002."""
    moved = replace(tiny_city(), "319999001001001",
                    geometry=box(X0, Y0 + D / 2 + 0.002, X0 + D, Y0 + D))
    return replace(moved, "319999001001002", geometry=box(X0, Y0, X0 + D, Y0 + D / 2 + 0.002))
