"""Buttons end to end: a keyboard sent through the outbox, a simulated user pressing it,
the listener, an update worker running the app's callback handlers, the sender answering,
editing and deleting, and what the user sees. Also a user blocking and unblocking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.databases import is_blocked, query
from tests.support.running import RunningApp
from tests.support.waiting import wait_until
from tgfleet.bots.runtime import STALE_BUTTON_NOTICE
from tgfleet.platform.settings import Settings

pytestmark = pytest.mark.timeout(300)
APP = "tests.support.apps:buttons"


@pytest.fixture
def fleet(run_app: Callable[..., RunningApp]) -> RunningApp:
    """A bot running the buttons app, with a listener, an update worker and a sender."""
    return run_app(APP)


def keyboard_message(simulator: Any, user: int, bot: int, seen: int) -> dict[str, Any]:
    simulator.send(user, bot, "/start")
    return simulator.wait_received(user, seen + 1, bot, timeout=60)[seen]


def test_a_press_is_answered_and_its_message_edited(simulator: Any, fleet: dict[str, int]) -> None:
    bot, user = fleet["bot"], fleet["user"]
    # Given the user got a message with four buttons in two rows
    message = keyboard_message(simulator, user, bot, 0)
    rows = message["markup"]["inline"]
    assert [[b["text"] for b in row] for row in rows] == [["Like", "Skip"], ["Gone", "Drop"]]
    assert rows[0][0]["data"] == "vote:like:1"
    # When the user presses Like
    answer = simulator.press(user, bot, message["message_id"], text="Like", timeout=30)
    # Then the handler's answer reached the user (the spinner stopped), as an alert
    assert (answer["answered"], answer["message"], answer["alert"]) == (True, "Liked 1!", True)
    # And the message was edited in place, its buttons gone
    edited = wait_until(
        lambda: [
            m
            for m in simulator.received(user, bot)
            if m["message_id"] == message["message_id"] and m["edit_date"]
        ],
        60,
        "the edit",
    )[0]
    assert edited["text"] == "You liked 1"
    assert not (edited["markup"] or {}).get("inline")


def test_a_press_no_handler_answers_is_answered_once_by_the_platform(
    settings: Settings, simulator: Any, fleet: dict[str, int]
) -> None:
    bot, user = fleet["bot"], fleet["user"]
    message = keyboard_message(simulator, user, bot, 0)
    # When the user presses Skip, whose handler does not answer
    answer = simulator.press(user, bot, message["message_id"], text="Skip", timeout=30)
    # Then the platform answered it, empty, and the handler still ran once
    assert (answer["answered"], answer["message"]) == (True, None)
    wait_until(
        lambda: query(settings, "SELECT count(*) FROM events WHERE bot_id = %s", bot)[0][0] == 1,
        30,
        "the handler's event",
    )
    # And a press of a button no handler takes any more gets a short notice
    stale = simulator.press(user, bot, message["message_id"], text="Gone", timeout=30)
    assert (stale["answered"], stale["message"]) == (True, STALE_BUTTON_NOTICE)
    # And each press was answered exactly once
    answers = query(
        settings, "SELECT count(*) FROM outbox WHERE bot_id = %s AND op = 'answer'", bot
    )
    assert answers[0][0] == 2


def test_a_handler_deletes_the_message_its_button_is_on(
    simulator: Any, fleet: dict[str, int]
) -> None:
    bot, user = fleet["bot"], fleet["user"]
    message = keyboard_message(simulator, user, bot, 0)
    answer = simulator.press(user, bot, message["message_id"], text="Drop", timeout=30)
    assert answer["answered"] is True
    wait_until(
        lambda: any(
            m["message_id"] == message["message_id"] and m["deleted"]
            for m in simulator.received(user, bot)
        ),
        60,
        "the delete",
    )


def test_blocking_marks_the_user_and_runs_the_handler(
    settings: Settings, simulator: Any, fleet: dict[str, int]
) -> None:
    bot, user = fleet["bot"], fleet["user"]
    keyboard_message(simulator, user, bot, 0)  # the user is known to the bot

    def blocked() -> bool | None:
        return is_blocked(settings, bot, user)

    # When the user blocks the bot, Then they are marked blocked and the handler ran
    simulator.block(user, bot, True)
    wait_until(lambda: blocked() is True, 60, "the user marked blocked")
    # When they unblock it, Then the mark is gone again, and both events were recorded
    simulator.block(user, bot, False)
    wait_until(lambda: blocked() is False, 60, "the user marked unblocked")
    sql = "SELECT kind FROM events WHERE bot_id = %s AND kind LIKE '%%blocked' ORDER BY id"
    wait_until(
        lambda: [r[0] for r in query(settings, sql, bot)] == ["blocked", "unblocked"],
        30,
        "the handlers' events, in order",
    )
