import pytest

from tgfleet.testing import BotFactory, RunningBot, UserFactory


@pytest.fixture
def bot(tgfleet_bot: BotFactory) -> RunningBot:
    """A bot running quickbot's router on real tgfleet processes."""
    return tgfleet_bot(app="quickbot.app:router")


def test_a_vote_is_answered_and_the_question_edited(
    bot: RunningBot, tgfleet_user: UserFactory
) -> None:
    ann = tgfleet_user("Ann")
    # Given Ann started the bot and got its question
    ann.send("/start")
    question = ann.expect_reply("Do you like quickbot?", keyboard=[["Yes", "No"]])
    # When she presses Yes
    answer = ann.press("Yes")
    # Then the press is answered and the question edited, its buttons gone
    assert answer.text == "Thanks for voting!"
    ann.expect_edit(question, "You voted yes.", keyboard=[])


def test_text_is_echoed(bot: RunningBot, tgfleet_user: UserFactory) -> None:
    bob = tgfleet_user("Bob")
    # When Bob writes to the bot, Then it echoes what he wrote
    bob.send("hello there")
    bob.expect_reply("You wrote: hello there")
