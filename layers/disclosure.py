"""What the public sees of grid staff, one policy for every way out (grids, layers, owner
answers, the dispute lookup, the map pages). Staff (any token) see everything. The public
sees what the deployment posts on the grid's board (GRIDOPS_PUBLIC_STAFF):
- "none": no staff name or phone at all;
- "leader" (default): the grid leader's name, no phone;
- "leader_phone": the grid leader's name and phone (a service number on the board).
Role holders (specialists, supervisors, volunteers) and patrol members are never public:
the public sees the role and its department, not the person."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

PublicStaff = Literal["none", "leader", "leader_phone"]

PERSON_FIELDS = ("name", "phone")


@dataclass(frozen=True)
class StaffView:
    """The policy for one caller: staff or the public, under the deployment's setting."""

    staff: bool
    public: PublicStaff = "leader"

    def leader(self, name: str | None, phone: str | None) -> dict[str, Any] | None:
        """The grid leader (网格长) as this caller may see it (None: nothing to show)."""
        if not self.staff:
            name = name if self.public in ("leader", "leader_phone") else None
            phone = phone if self.public == "leader_phone" else None
        return {"name": name, "phone": phone} if name or phone else None

    def person(self, p: dict[str, Any] | None) -> dict[str, Any] | None:
        """A role holder (a specialist, say): the public sees the role, not the person."""
        if p is None or self.staff:
            return p
        return {k: (None if k in PERSON_FIELDS else v) for k, v in p.items()}

    def patrol(self, shifts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Patrols on duty: the public sees the team and the shift, not its members."""
        if self.staff:
            return shifts
        return [{**s, "members": []} for s in shifts]

    def owner_answer(self, a: dict[str, Any]) -> dict[str, Any]:
        """An owner resolution (layers.ownership.resolve_owner) as this caller may see it."""
        if self.staff:
            return a
        lead = a.get("grid_leader") or {}
        trail = [dict(t, candidates=[self.person(c) if isinstance(c, dict) and "phone" in c
                                     else c for c in t.get("candidates", [])])
                 for t in a.get("trail", [])]
        return {**a, "specialist": self.person(a.get("specialist")),
                "grid_leader": self.leader(lead.get("name"), lead.get("phone")),
                "patrol": self.patrol(a.get("patrol") or []), "trail": trail}

    def layer_row(self, layer: str, row: dict[str, Any]) -> dict[str, Any]:
        """A row of a responsibility layer: role holders' and patrol members' persons are
        staff-only."""
        if self.staff:
            return row
        if layer == "roles":
            return {k: (None if k in PERSON_FIELDS else v) for k, v in row.items()}
        if layer == "teams" and "members" in row:
            return {**row, "members": []}
        return row
