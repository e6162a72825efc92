"""Conversation state without a database: declarations and names, the StateIs filter,
expiry, what a change writes (the statements, not their effect: tests/inbox/test_state.py
runs them), and how the runtime seeds ``ctx.state`` from what the drain read."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.support.apps_fsm import Registration
from tests.unit.bots.updates import BOT, USER, context, message
from tgfleet.bots import Context, ConversationState, Router, State, StateIs, StatesGroup
from tgfleet.bots.fsm import CLEAR_STATE, SAVE_STATE, StoredState
from tgfleet.bots.runtime import BotView, WithState, handler_for
from tgfleet.inbox import InboundMessage

NOW = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
APP = "tests.support.apps_fsm:registration"


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def seeded(stored: StoredState | None = None, clock: Clock | None = None) -> ConversationState:
    """A state as the runtime seeds it; the unbound session fails any query."""
    return ConversationState(Session(), BOT, USER, USER, stored, clock=clock or Clock())


def check(flt: Any, state: str | None) -> Any:
    ctx = context(message("hi"), state=state)
    return flt(ctx.update, ctx)


# -- declarations ------------------------------------------------------------------------


def test_states_know_their_group_and_name() -> None:
    assert Registration.name.state == "Registration:name"
    assert str(Registration.age) == "Registration:age"
    assert Registration.age.group is Registration
    assert Registration.age.name == "age"
    assert list(Registration) == [Registration.name, Registration.age]
    assert len(Registration) == 2
    assert Registration.age in Registration
    assert "Registration:name" in Registration
    assert "Other:name" not in Registration


def test_a_state_outside_a_group_is_refused() -> None:
    loose = State()
    with pytest.raises(TypeError, match="declared in a StatesGroup"):
        _ = loose.state
    with pytest.raises(RuntimeError) as raised:

        class NotAGroup:
            step = State()

    assert "must be declared in a StatesGroup" in str(raised.value.__cause__)


def test_one_state_object_in_two_groups_is_refused() -> None:
    shared = State()

    class First(StatesGroup):
        step = shared

    with pytest.raises(RuntimeError) as raised:

        class Second(StatesGroup):
            step = shared

    assert "declared again" in str(raised.value.__cause__)
    assert First.step.state == "First:step"


# -- the filter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "state", "expected"),
    [
        ((Registration.name,), "Registration:name", True),
        ((Registration.name,), "Registration:age", False),
        ((Registration,), "Registration:age", True),
        ((Registration,), "Other:age", False),
        ((Registration,), None, False),
        ((None,), None, True),
        ((None,), "Registration:name", False),
        ((Registration.age, None), None, True),
        (("Registration:age",), "Registration:age", True),
        (("*",), "Registration:age", True),
        (("*",), None, False),
    ],
)
def test_state_is_takes_states_groups_names_and_none(
    states: tuple[Any, ...], state: str | None, expected: bool
) -> None:
    assert check(StateIs(*states), state) is expected


def test_state_is_refuses_what_is_not_a_state() -> None:
    class Empty(StatesGroup):
        pass

    with pytest.raises(ValueError, match="the group has no states"):
        StateIs(Empty)
    with pytest.raises(TypeError, match="a state is a State"):
        StateIs(42)  # type: ignore[arg-type]


# -- reading and expiry ------------------------------------------------------------------


def test_no_row_reads_as_no_state_and_no_data() -> None:
    state = seeded(None)
    assert (state.get(), state.get_data(), state.expires_at) == (None, {}, None)
    assert state.pending() is None


def test_a_live_row_reads_as_stored_and_its_data_is_a_copy() -> None:
    state = seeded(StoredState("Registration:age", {"name": "Ann"}, NOW + timedelta(minutes=1)))
    assert state.get() == "Registration:age"
    state.data["name"] = "changed"  # a copy: changes nothing
    assert state.get_data() == {"name": "Ann"}
    assert state.pending() is None


def test_an_expired_row_reads_as_none_and_is_deleted_with_the_next_write() -> None:
    # Given a row that expired a second ago
    state = seeded(StoredState("Registration:age", {"name": "Ann"}, NOW - timedelta(seconds=1)))
    # Then it reads as no state and no data
    assert (state.get(), state.get_data()) == (None, {})
    # And the handler's transaction deletes it even if the handler changes nothing
    assert state.pending() == (CLEAR_STATE, (BOT, USER, USER))


def test_expiry_counts_from_set_and_update_data_keeps_it() -> None:
    clock = Clock()
    state = seeded(None, clock)
    # When a state is set to expire in an hour, and data added later
    state.set(Registration.name, expires_in=timedelta(hours=1))
    clock.now += timedelta(minutes=10)
    state.update_data(name="Ann")
    # Then it still expires an hour after it was set
    assert state.expires_at == NOW + timedelta(hours=1)
    # And a new state without expires_in never expires
    state.set(Registration.age)
    assert state.expires_at is None


def test_expires_in_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        seeded().set(Registration.name, expires_in=timedelta(0))


# -- changing and what is written --------------------------------------------------------


def test_changes_are_one_upsert_of_the_whole_row() -> None:
    # Given a user in no state
    state = seeded(None)
    # When a handler sets a state with expiry and adds data twice
    state.set(Registration.name, expires_in=timedelta(minutes=5))
    state.update_data(name="Ann")
    assert state.update_data({"age": 30}, city="Lisbon") == {
        "name": "Ann",
        "age": 30,
        "city": "Lisbon",
    }
    # Then one statement writes the final row
    call = state.pending()
    assert call is not None
    statement, args = call
    assert statement is SAVE_STATE
    bot, chat, user, name, data, expires_at = args
    assert (bot, chat, user, name) == (BOT, USER, USER, "Registration:name")
    assert json.loads(data) == {"name": "Ann", "age": 30, "city": "Lisbon"}
    assert expires_at == NOW + timedelta(minutes=5)


def test_set_none_keeps_the_data_and_clear_deletes_the_row() -> None:
    state = seeded(StoredState("Registration:age", {"name": "Ann"}))
    state.set(None)
    assert (state.get(), state.get_data()) == (None, {"name": "Ann"})
    assert state.pending() is not None and state.pending()[0] is SAVE_STATE  # type: ignore[index]
    state.clear()
    assert (state.get(), state.get_data()) == (None, {})
    assert state.pending() == (CLEAR_STATE, (BOT, USER, USER))


def test_set_data_replaces_and_data_reads_back_as_json_would() -> None:
    state = seeded(StoredState("Registration:age", {"name": "Ann"}))
    state.set_data({"tags": ("a", "b"), 1: "one"})
    assert state.get_data() == {"tags": ["a", "b"], "1": "one"}
    assert state.get() == "Registration:age"
    with pytest.raises(TypeError, match="must be JSON"):
        state.update_data(when=NOW)
    assert state.get_data() == {"tags": ["a", "b"], "1": "one"}  # the failed change is void


# -- the runtime -------------------------------------------------------------------------


def drained(inbound: InboundMessage, **read: Any) -> InboundMessage:
    """``inbound`` as the drain gives it: with what it read beside the message."""
    return dataclasses.replace(inbound, state_loaded=True, **read)


def run(inbound: InboundMessage, app: str = APP) -> tuple[list[str], Any]:
    effects = handler_for(BotView(BOT, (), {"app": app}))(Session(), inbound)
    assert effects is not None
    return [row["text"] for row in effects.outbox], effects


def test_the_runtime_routes_on_the_state_the_drain_read_and_batches_the_change() -> None:
    # Given a user who was asked for their name (the drain read the row with the message)
    inbound = drained(
        message("Ann"),
        state="Registration:name",
        state_data={},
        state_expires_at=datetime.now(UTC) + timedelta(days=1),  # the runtime reads the clock
    )
    # When the runtime runs the app on their reply
    replies, effects = run(inbound)
    # Then the name step ran without any query (the session is unbound)
    assert replies == ["How old are you?"]
    # And the state change goes with the processed mark, before the outbox rows
    assert isinstance(effects, WithState)
    mark = (SAVE_STATE, ())  # stands for the drain's processed mark
    calls = effects.calls([mark])
    assert calls[0] is mark
    statement, args = calls[1]
    assert statement is SAVE_STATE
    assert args[3] == "Registration:age" and json.loads(args[4]) == {"name": "Ann"}
    assert len(calls) == 3  # and the reply


probe = Router("probe")


@probe.message()
def show(ctx: Context) -> None:
    ctx.reply(f"{ctx.state_name} {ctx.user_lang}")


def test_the_runtime_fills_state_name_and_language_and_writes_no_unchanged_state() -> None:
    # Given a user in a state, whose language the drain read
    inbound = drained(message("hello"), state="A:b", state_data={}, user_lang="pt-br")
    # When a handler answers without changing the state
    replies, effects = run(inbound, "tests.unit.bots.test_fsm:probe")
    # Then it saw both, and nothing but its effects is written
    assert replies == ["A:b pt-br"]
    assert not isinstance(effects, WithState)


def test_an_expired_state_routes_as_none() -> None:
    inbound = drained(
        message("Ann"),
        state="Registration:name",
        state_data={"name": "old"},
        state_expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    replies, effects = run(inbound)
    assert replies == ["Send /register to start."]
    assert isinstance(effects, WithState)
    assert effects.change == (CLEAR_STATE, (BOT, USER, USER))
