"""Group membership end to end: a simulated user adds the bot and another user to a
basic group and removes them; the listener publishes the service messages (pts) and the
bot's participant updates (qts), an update worker runs the app's ``chat_member``
handler, the sender posts its replies in the group, and the members see them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.databases import query
from tests.support.running import RunningApp
from tests.support.waiting import wait_until
from tgfleet.platform.settings import Settings

pytestmark = pytest.mark.timeout(300)
APP = "tests.support.apps_members:app"


def group_texts(simulator: Any, user: int, bot: int, group: int) -> list[str]:
    """What the bot posted in the group, as ``user`` sees it."""
    return [m["text"] for m in simulator.received(user, bot) if m["chat_id"] == group]


def test_members_joining_and_leaving_run_the_chat_member_handler_once_each(
    settings: Settings, simulator: Any, run_app: Callable[..., RunningApp]
) -> None:
    fleet = run_app(APP)
    bot, ann = fleet["bot"], fleet["user"]
    ben = int(simulator.create_user("Ben")["id"])
    # Given a group of Ann's
    group = int(simulator.create_group("Club", [ann])["id"])
    # When Ann adds the bot (a service message and the bot's participant update)
    simulator.add_member(group, bot, ann)
    # Then the bot greets the group once
    hello = f"hello, group (added by {ann})"
    wait_until(lambda: group_texts(simulator, ann, bot, group) == [hello], 60, "the greeting")
    # When Ann adds Ben, then removes him
    simulator.add_member(group, ben, ann)
    wait_until(
        lambda: group_texts(simulator, ben, bot, group) == [f"welcome {ben}"], 60, "the welcome"
    )
    simulator.remove_member(group, ben, ann)
    # Then the group saw the greeting, the welcome and the goodbye, in that order
    expected = [hello, f"welcome {ben}", f"bye {ben}"]
    wait_until(
        lambda: group_texts(simulator, ann, bot, group) == expected,
        60,
        "the goodbye",
        detail=lambda: group_texts(simulator, ann, bot, group),
    )
    # When Ann removes the bot, Then its handler ran for that too (it can only note it)
    simulator.remove_member(group, bot, ann)
    events = "SELECT kind, data FROM events WHERE bot_id = %s ORDER BY id"
    [(kind, data)] = wait_until(lambda: query(settings, events, bot), 60, "the removal")
    assert (kind, data["chat_id"], data["by"]) == ("removed", -group, ann)
    # And every update of the group was recorded and handled, the bot's own changes twice
    # (the service message and the participant update), nothing left waiting
    rows = (
        "SELECT payload->>'kind', processed_at IS NOT NULL FROM messages "
        "WHERE bot_id = %s AND chat_id = %s AND direction = 'in'"
    )
    recorded = wait_until(
        lambda: (r := query(settings, rows, bot, -group)) and all(done for _, done in r) and r,
        30,
        "every update handled",
    )
    assert sorted(kind for kind, _ in recorded) == ["chat_member"] * 6
    assert group_texts(simulator, ann, bot, group) == expected  # nothing more was posted
