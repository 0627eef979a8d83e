"""The case state machine on its own (no database): every move of the table leads where the
table says, for exactly the roles it names; an illegal action is a 409 that lists what is
allowed; a role that may not act is a 403; finished cases take nothing; next_state and
transition say what step says."""

from __future__ import annotations

import itertools

import pytest

from layers import workflow
from layers.workflow import (
    ADMIN,
    CENTRE,
    DEPARTMENT,
    DONE,
    INITIAL,
    MOVES,
    OPEN,
    PATROL,
    PLANNER,
    PUBLIC,
    ROLES,
    SIDE_ACTIONS,
    STATES,
    SYSTEM,
    Forbidden,
    IllegalTransition,
    allowed,
    next_state,
    step,
    transition,
)

ALL_ROLES = (*ROLES, SYSTEM)
ACTIONS = sorted({m.action for ms in MOVES.values() for m in ms} | set(SIDE_ACTIONS))
BEFORE = "dispatched"  # the state before a suspension, where a move back leads


def _moves() -> list[tuple[str, workflow.Move]]:
    return [(state, m) for state, ms in MOVES.items() for m in ms]


# ---------------------------------------------------------------- the table itself


def test_the_states_and_the_table_agree() -> None:
    assert set(OPEN).isdisjoint(DONE) and len(STATES) == len(set(STATES))
    assert set(MOVES) == set(STATES)  # every state has its (possibly empty) row
    assert INITIAL in OPEN
    for state, m in _moves():
        assert m.to is None or m.to in STATES, (state, m)
        assert m.roles <= set(ROLES) and ADMIN in m.roles, (state, m)
        assert [x.action for x in MOVES[state]].count(m.action) == 1  # one move an action
    assert set(SIDE_ACTIONS).isdisjoint(m.action for _, m in _moves())


def test_the_documented_loop() -> None:
    """七步循环法 as the table writes it, down to the state names."""
    expected = {
        "collected": {"accept": "accepted", "reject": "rejected", "cancel": "cancelled",
                      "merge": "merged"},
        "accepted": {"dispatch": "dispatched", "cancel": "cancelled"},
        "dispatched": {"take": "in_progress", "bounce": "bounced", "suspend": "suspended",
                       "cancel": "cancelled"},
        "bounced": {"dispatch": "dispatched", "cancel": "cancelled"},
        "in_progress": {"feedback": "feedback", "suspend": "suspended"},
        "suspended": {"resume": None, "cancel": "cancelled"},
        "feedback": {"verify": "closed", "reopen": "in_progress"},
        "closed": {"evaluate": "evaluated"},
        "evaluated": {}, "rejected": {}, "cancelled": {}, "merged": {"split": "collected"},
    }
    assert {s: {m.action: m.to for m in ms} for s, ms in MOVES.items()} == expected


@pytest.mark.parametrize(("state", "move"), _moves(),
                         ids=[f"{s}-{m.action}" for s, m in _moves()])
def test_every_move_leads_where_the_table_says(state: str, move: workflow.Move) -> None:
    to = move.to or BEFORE
    for role in sorted(move.roles):
        assert step(state, move.action, role, BEFORE) == to
    assert next_state(state, move.action, BEFORE) == to
    assert transition(state, move.action) == move
    assert move.action in allowed(state)


def test_who_may_do_what() -> None:
    roles = {
        ("collected", "accept"): {CENTRE}, ("collected", "reject"): {CENTRE},
        ("collected", "cancel"): {CENTRE}, ("collected", "merge"): {CENTRE},
        ("accepted", "dispatch"): {CENTRE}, ("accepted", "cancel"): {CENTRE},
        ("dispatched", "take"): {DEPARTMENT}, ("dispatched", "bounce"): {DEPARTMENT},
        ("dispatched", "suspend"): {CENTRE}, ("dispatched", "cancel"): {CENTRE},
        ("bounced", "dispatch"): {CENTRE}, ("bounced", "cancel"): {CENTRE},
        ("in_progress", "feedback"): {DEPARTMENT}, ("in_progress", "suspend"): {CENTRE},
        ("suspended", "resume"): {CENTRE}, ("suspended", "cancel"): {CENTRE},
        ("feedback", "verify"): {CENTRE, PATROL}, ("feedback", "reopen"): {CENTRE, PATROL},
        ("closed", "evaluate"): {CENTRE, PUBLIC}, ("merged", "split"): {CENTRE},
    }
    assert {(s, m.action): set(m.roles) - {ADMIN} for s, m in _moves()} == roles
    side = {"extend": {CENTRE, ADMIN}, "re_resolve": {CENTRE, PLANNER, ADMIN},
            "note": {CENTRE, DEPARTMENT, PATROL, ADMIN}}
    assert {a: set(rs) for a, rs in SIDE_ACTIONS.items()} == side


@pytest.mark.parametrize(("state", "move"), _moves(),
                         ids=[f"{s}-{m.action}" for s, m in _moves()])
def test_a_role_that_may_not_is_a_403_naming_who_may(state: str,
                                                     move: workflow.Move) -> None:
    for role in sorted(set(ALL_ROLES) - move.roles):
        with pytest.raises(Forbidden) as e:
            step(state, move.action, role, BEFORE)
        assert e.value.status == 403 and e.value.code == "forbidden"
        assert f"a {role} may not {move.action}" in e.value.detail
        assert ", ".join(sorted(move.roles)) in e.value.detail


def test_allowed_for_a_role() -> None:
    for state, role in itertools.product(STATES, ALL_ROLES):
        moves = [m.action for m in MOVES[state] if role in m.roles]
        side = [a for a, rs in SIDE_ACTIONS.items() if role in rs] if state in OPEN else []
        assert allowed(state, role) == moves + side, (state, role)
        for action in allowed(state, role):  # what is listed for a role, the role may do
            step(state, action, role, BEFORE)
    assert allowed("feedback", PUBLIC) == []
    assert allowed("closed", PUBLIC) == ["evaluate"]


# ---------------------------------------------------------------- illegal actions


def _illegal() -> list[tuple[str, str]]:
    return [(s, a) for s, a in itertools.product(STATES, ACTIONS) if a not in allowed(s)]


@pytest.mark.parametrize(("state", "action"), _illegal(),
                         ids=[f"{s}-{a}" for s, a in _illegal()])
def test_an_illegal_action_is_a_409_listing_the_allowed_ones(state: str, action: str) -> None:
    for role in ALL_ROLES:  # the state is judged before the role
        with pytest.raises(IllegalTransition) as e:
            step(state, action, role, BEFORE)
        err = e.value
        assert err.status == 409 and err.code == "illegal_transition"
        assert err.extra == {"state": state, "allowed": allowed(state)}
        listed = ", ".join(allowed(state)) or "nothing (the case is finished)"
        assert err.detail == f"cannot {action} a case that is {state}; allowed: {listed}"
    for call in (lambda: next_state(state, action, BEFORE), lambda: transition(state, action)):
        with pytest.raises(IllegalTransition) as e2:
            call()
        assert e2.value.detail == err.detail and e2.value.extra == err.extra


def test_unknown_actions_and_states_are_illegal() -> None:
    with pytest.raises(IllegalTransition, match="allowed: accept, reject, cancel, merge, "
                                                "extend, re_resolve, note"):
        step("collected", "close", CENTRE)
    with pytest.raises(IllegalTransition, match="allowed: nothing"):
        step("no_such_state", "accept", ADMIN)
    with pytest.raises(IllegalTransition):
        next_state("collected", "escalate")  # the scheduler's, not a workflow action


def test_a_move_back_needs_the_state_before() -> None:
    assert step("suspended", "resume", CENTRE, "in_progress") == "in_progress"
    assert next_state("suspended", "resume", "dispatched") == "dispatched"
    for call in (lambda: step("suspended", "resume", CENTRE),
                 lambda: next_state("suspended", "resume")):
        with pytest.raises(IllegalTransition, match="the state before suspended is unknown"):
            call()
    with pytest.raises(Forbidden):  # the role is judged before the missing state
        step("suspended", "resume", DEPARTMENT)


# ---------------------------------------------------------------- side actions, the end


@pytest.mark.parametrize("state", OPEN)
def test_side_actions_keep_an_open_state(state: str) -> None:
    for action, roles in SIDE_ACTIONS.items():
        assert next_state(state, action) == state
        for role in ALL_ROLES:
            if role in roles:
                assert step(state, action, role) == state
            else:
                with pytest.raises(Forbidden, match=f"a {role} may not {action}"):
                    step(state, action, role)


@pytest.mark.parametrize("state", DONE)
def test_a_finished_case_takes_no_side_action(state: str) -> None:
    for action in SIDE_ACTIONS:
        with pytest.raises(IllegalTransition):
            step(state, action, ADMIN)
        with pytest.raises(IllegalTransition):
            next_state(state, action)


def test_terminal_states() -> None:
    terminal = [s for s in STATES if not allowed(s)]
    assert terminal == ["evaluated", "rejected", "cancelled"]
    assert set(terminal) <= set(DONE)
    for state in terminal:
        with pytest.raises(IllegalTransition, match="nothing \\(the case is finished\\)"):
            step(state, "note", ADMIN)
    # the other finished states take only their one way on (or back)
    assert {s: allowed(s) for s in DONE if s not in terminal} == {
        "closed": ["evaluate"], "merged": ["split"]}


def _reachable(state: str) -> set[str]:
    seen, todo = {state}, [state]
    while todo:
        here = todo.pop()
        for m in MOVES[here]:
            to = next_state(here, m.action, BEFORE)
            if to not in seen:
                seen.add(to)
                todo.append(to)
    return seen


def test_every_state_is_reachable_and_every_open_case_can_finish() -> None:
    assert _reachable(INITIAL) == set(STATES)
    for state in OPEN:
        assert _reachable(state) & set(DONE), state


# ---------------------------------------------------------------- next_state is step


def test_next_state_and_transition_say_what_step_says() -> None:
    """next_state is step without the role: for the admin (who may take every action) the
    two agree on every state, action and state before, errors included."""
    for state, action, before in itertools.product((*STATES, "no_such_state"),
                                                   (*ACTIONS, "no_such_action"),
                                                   (None, *OPEN)):
        try:
            want: str | tuple[type, str] = step(state, action, ADMIN, before)
        except IllegalTransition as e:
            want = (type(e), e.detail)
        try:
            got: str | tuple[type, str] = next_state(state, action, before)
        except IllegalTransition as e:
            got = (type(e), e.detail)
        assert got == want, (state, action, before)
        if action not in SIDE_ACTIONS and isinstance(want, str):
            assert transition(state, action) in MOVES[state]


def test_a_whole_case() -> None:
    """Report to rating with a bounce, a suspension and a reopening, by the roles that act."""
    walk = [("accept", CENTRE, "accepted"), ("dispatch", CENTRE, "dispatched"),
            ("bounce", DEPARTMENT, "bounced"), ("dispatch", CENTRE, "dispatched"),
            ("suspend", CENTRE, "suspended"), ("resume", CENTRE, "dispatched"),
            ("take", DEPARTMENT, "in_progress"), ("note", DEPARTMENT, "in_progress"),
            ("extend", CENTRE, "in_progress"), ("feedback", DEPARTMENT, "feedback"),
            ("reopen", PATROL, "in_progress"), ("feedback", DEPARTMENT, "feedback"),
            ("verify", PATROL, "closed"), ("evaluate", PUBLIC, "evaluated")]
    state, before = INITIAL, None
    for action, role, to in walk:
        after = step(state, action, role, before)
        assert after == to, (state, action)
        state, before = after, (state if after != state else before)
    assert allowed(state) == []
