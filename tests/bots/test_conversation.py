"""A conversation end to end: a simulated user registers with a bot running
``tests.support.apps_fsm:registration`` (name, then age, a bad age asked again), through
the listener, an update worker with two processes (so steps may be taken by different
ones: the state travels in PostgreSQL, not in a process) and the sender. At each step
the user's replies and the stored state are checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.databases import query
from tests.support.running import RunningApp
from tgfleet.platform.settings import Settings

pytestmark = pytest.mark.timeout(300)
APP = "tests.support.apps_fsm:registration"


@pytest.fixture
def fleet(run_app: Callable[..., RunningApp]) -> RunningApp:
    """A bot running the registration app, with a listener, an update worker of two
    processes and a sender."""
    return run_app(APP)


class Chat:
    """The user's side of the chat with the bot, and the state the bot keeps for them."""

    def __init__(self, settings: Settings, simulator: Any, bot: int, user: int) -> None:
        self.settings, self.simulator, self.bot, self.user = settings, simulator, bot, user
        self.seen = 0

    def say(self, text: str) -> str:
        """Send ``text``; the bot's one answer to it."""
        self.simulator.send(self.user, self.bot, text)
        received = self.simulator.wait_received(self.user, self.seen + 1, self.bot, timeout=60)
        self.seen += 1
        answer: str = received[self.seen - 1]["text"]
        return answer

    def state(self) -> tuple[Any, ...] | None:
        rows = query(
            self.settings,
            "SELECT state, data, expires_at > now() FROM conversation_states "
            "WHERE bot_id = %s AND chat_id = %s AND user_id = %s",
            self.bot,
            self.user,
            self.user,
        )
        return rows[0] if rows else None


def test_a_registration_takes_its_steps_in_order_on_any_worker(
    settings: Settings, simulator: Any, fleet: dict[str, int]
) -> None:
    chat = Chat(settings, simulator, fleet["bot"], fleet["user"])
    # Given a user in no conversation
    assert chat.say("hello") == "Send /register to start."
    assert chat.state() is None
    # When they register, Then they are asked their name and the state says so
    assert chat.say("/register") == "What is your name?"
    assert chat.state() == ("Registration:name", {}, True)
    # When they give it, Then they are asked their age, the name kept
    assert chat.say("Ann") == "How old are you?"
    assert chat.state() == ("Registration:age", {"name": "Ann"}, True)
    # When the age is not a number, Then it is asked again and nothing changes
    assert chat.say("old enough") == "Please send your age as a number."
    assert chat.state() == ("Registration:age", {"name": "Ann"}, True)
    # When it is, Then the registration is done and the state gone
    assert chat.say("30") == "Done, Ann, 30"
    assert chat.state() is None
    # And the finished registration was recorded once
    events = query(
        settings,
        "SELECT data->>'age' FROM events WHERE bot_id = %s AND kind = 'registered'",
        fleet["bot"],
    )
    assert events == [("30",)]


def test_cancel_leaves_the_conversation_from_any_step(
    settings: Settings, simulator: Any, fleet: dict[str, int]
) -> None:
    chat = Chat(settings, simulator, fleet["bot"], fleet["user"])
    # Given a user half way through a registration
    assert chat.say("/register") == "What is your name?"
    assert chat.say("Bob") == "How old are you?"
    # When they cancel, Then the state and its data are gone
    assert chat.say("/cancel") == "Cancelled."
    assert chat.state() is None
    # And their next message is outside any conversation
    assert chat.say("42") == "Send /register to start."
    assert chat.say("/cancel") == "Nothing to cancel."
    # And a new registration starts afresh
    assert chat.say("/register") == "What is your name?"
    assert chat.state() == ("Registration:name", {}, True)
