"""The testing kit from tgfleet's own tests: a simulated user drives a bot running
``tests.support.apps:buttons`` on real processes, and a failed expectation says what
was expected and what arrived."""

from __future__ import annotations

import pytest

from tgfleet.platform.errors import AppUnavailable
from tgfleet.testing import BotFactory, ExpectationFailed, UserFactory

pytestmark = pytest.mark.timeout(300)


def test_a_user_presses_and_sees_edits_deletions_and_readable_failures(
    tgfleet_bot: BotFactory, tgfleet_user: UserFactory
) -> None:
    # Given a bot running the buttons app, and Ann, who got its keyboard
    bot = tgfleet_bot(app="tests.support.apps:buttons")
    ann = tgfleet_user("Ann")
    ann.send("/start")
    menu = ann.expect_reply("Pick one", keyboard=[["Like", "Skip"], ["Gone", "Drop"]])
    # When she expects a reply that never comes (a deadline, then the failure)
    with pytest.raises(ExpectationFailed) as failed:
        ann.expect_reply("Welcome!", timeout=1)
    # Then the failure says what was expected and what arrived
    assert str(failed.value).startswith(
        f"Ann expected a reply from {bot.mention} with text 'Welcome!' within 1s.\n"
        "New messages since the last expected reply: none\n"
        f"Earlier messages:\n    #{menu.id} 'Pick one' keyboard=[['Like', 'Skip'], "
        "['Gone', 'Drop']]\n"
    )
    # When she presses Like, Then the answer comes back and the message is edited
    answer = ann.press("Like")
    assert (answer.text, answer.alert) == ("Liked 1!", True)
    edited = ann.expect_edit(menu, "You liked 1", keyboard=[])
    assert edited.edited and ann.last_message() == edited
    # When she presses Drop on a new keyboard, Then that message is deleted
    ann.send("/start")
    second = ann.expect_reply("Pick one")
    ann.press("Drop", second)
    assert ann.expect_deleted(second).deleted
    assert [m.id for m in ann.replies()] == [menu.id, second.id]


def test_an_app_the_workers_could_not_load_is_refused_at_once(tgfleet_bot: BotFactory) -> None:
    with pytest.raises(AppUnavailable, match=r"cannot import 'tests\.support\.no_such_app'"):
        tgfleet_bot(app="tests.support.no_such_app:router")
