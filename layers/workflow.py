"""The case state machine (七步循环法): which action leads from which state to which, and
who may take it. Pure: no database here."""

from __future__ import annotations

from dataclasses import dataclass

from spatial.errors import Conflict, GridopsError

CENTRE, DEPARTMENT, PATROL, PLANNER, ADMIN, PUBLIC, SYSTEM = (
    "centre", "department", "patrol", "planner", "admin", "public", "system")
ROLES = (CENTRE, DEPARTMENT, PATROL, PLANNER, ADMIN, PUBLIC)

OPEN = ("collected", "accepted", "dispatched", "bounced", "in_progress", "suspended",
        "feedback")
DONE = ("closed", "evaluated", "rejected", "cancelled", "merged")
STATES = OPEN + DONE
INITIAL = "collected"  # where every case starts: intake's report makes it


@dataclass(frozen=True)
class Move:
    """An action from a state, where it leads (None: back to the state before), and who."""

    action: str
    to: str | None
    roles: frozenset[str]


def _m(action: str, to: str | None, *roles: str) -> Move:
    return Move(action, to, frozenset((*roles, ADMIN)))


MOVES: dict[str, tuple[Move, ...]] = {
    "collected": (_m("accept", "accepted", CENTRE), _m("reject", "rejected", CENTRE),
                  _m("cancel", "cancelled", CENTRE), _m("merge", "merged", CENTRE)),
    "accepted": (_m("dispatch", "dispatched", CENTRE), _m("cancel", "cancelled", CENTRE)),
    "dispatched": (_m("take", "in_progress", DEPARTMENT), _m("bounce", "bounced", DEPARTMENT),
                   _m("suspend", "suspended", CENTRE), _m("cancel", "cancelled", CENTRE)),
    "bounced": (_m("dispatch", "dispatched", CENTRE), _m("cancel", "cancelled", CENTRE)),
    "in_progress": (_m("feedback", "feedback", DEPARTMENT),
                    _m("suspend", "suspended", CENTRE)),
    "suspended": (_m("resume", None, CENTRE), _m("cancel", "cancelled", CENTRE)),
    "feedback": (_m("verify", "closed", CENTRE, PATROL), _m("reopen", "in_progress", CENTRE,
                                                          PATROL)),
    "closed": (_m("evaluate", "evaluated", CENTRE, PUBLIC),),
    "evaluated": (), "rejected": (), "cancelled": (), "merged": (_m("split", "collected",
                                                                      CENTRE),),
}
# actions that change no state; allowed while the case is open
SIDE_ACTIONS: dict[str, frozenset[str]] = {
    "extend": frozenset({CENTRE, ADMIN}),  # a new deadline, approved by the centre
    # again against today's layers (a planner's: re-homing open cases at an activation)
    "re_resolve": frozenset({CENTRE, PLANNER, ADMIN}),
    "note": frozenset({CENTRE, DEPARTMENT, PATROL, ADMIN}),
}


class IllegalTransition(Conflict):
    """The action is not possible from the case's state."""

    code = "illegal_transition"


class Forbidden(GridopsError):
    """The caller's role may not take this action."""

    status = 403
    code = "forbidden"


def allowed(state: str, role: str | None = None) -> list[str]:
    """Actions possible from a state (for a role, if given)."""
    out = [m.action for m in MOVES.get(state, ()) if role is None or role in m.roles]
    if state in OPEN:
        out += [a for a, roles in SIDE_ACTIONS.items() if role is None or role in roles]
    return out


def transition(state: str, action: str) -> Move:
    """The table's move for an action from a state, or IllegalTransition (409) listing the
    actions allowed there (as step raises it). Side actions are not moves."""
    found = next((m for m in MOVES.get(state, ()) if m.action == action), None)
    if found is None:
        raise IllegalTransition(
            f"cannot {action} a case that is {state}; allowed: "
            f"{', '.join(allowed(state)) or 'nothing (the case is finished)'}",
            extra={"state": state, "allowed": allowed(state)})
    return found


def next_state(state: str, action: str, previous: str | None = None) -> str:
    """The state after an action, whoever takes it: the table's target, the same state for
    a side action of an open case, `previous` (the state before) for a move back (resume).
    IllegalTransition as step raises it; who may take the action is step's question."""
    if action in SIDE_ACTIONS and state in OPEN:
        return state
    to = transition(state, action).to
    if to is None:
        if previous is None:
            raise IllegalTransition(f"cannot {action}: the state before {state} is unknown")
        return previous
    return to


def step(state: str, action: str, role: str, previous: str | None = None) -> str:
    """The state after an action, or a 409 listing what is allowed / a 403 for the role."""
    if action in SIDE_ACTIONS and state in OPEN:
        if role not in SIDE_ACTIONS[action]:
            raise Forbidden(f"a {role} may not {action} a case")
        return state
    move = transition(state, action)
    if role not in move.roles:
        raise Forbidden(f"a {role} may not {action} a case (allowed to: "
                        f"{', '.join(sorted(move.roles))})")
    if move.to is None:
        if previous is None:
            raise IllegalTransition(f"cannot {action}: the state before {state} is unknown")
        return previous
    return move.to
