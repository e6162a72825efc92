"""The matchmaking app end to end, written with the testing kit: simulated users who
type and press buttons -> listener -> update worker -> outbox -> sender -> what they see,
against real everything. One user speaks Russian (their app's language)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.databases import query
from tgfleet.platform.settings import Settings
from tgfleet.testing import RunningBot, SimulatedUser

pytestmark = pytest.mark.timeout(300)


def register(
    user: SimulatedUser,
    name: str,
    age: int,
    gender: str,
    seeking: str,
    *,
    photo: bool,
    skip: str = "Skip",
) -> None:
    """Go through registration: type the name and age, press the gender and whom to meet,
    send a photo (or press ``skip``), press ``skip`` for the bio."""
    user.send("/start")
    user.expect_reply()
    user.send(name)
    user.expect_reply()
    user.send(str(age))
    question = user.expect_reply(contains="?")
    user.press(gender, question)
    user.press(seeking, question)
    if photo:
        user.send_photo()
        question = user.expect_reply(contains="500")
    else:
        user.press(skip, question)  # (waits for the photo question: it has the button)
        user.expect_edit(question, contains="500")
    user.press(skip, question)  # ("All set!" in its place)
    user.expect_reply()  # the card
    user.expect_reply()  # the menu


def profile_row(settings: Settings, bot: RunningBot, user: SimulatedUser) -> tuple[Any, ...]:
    rows = query(
        settings,
        "SELECT display_name, age, gender, looking_for, bio, photo_id IS NOT NULL, "
        "moderation FROM profiles WHERE bot_id = %s AND user_id = %s",
        bot.id,
        user.id,
    )
    return rows[0]


def test_register_browse_match_and_moderate(
    tgfleet_bot: Any, tgfleet_user: Any, tgfleet_settings: Settings
) -> None:
    boss = tgfleet_user("Boss")
    bot = tgfleet_bot("matchmaking", admins=[boss])
    boss.send("hello")  # the bot learns its admin's chat from a message
    boss.expect_reply("Use the buttons below, or send /help.")

    # Ann registers: each question has Back and Cancel; bad ages are refused
    ann = tgfleet_user("Ann")
    ann.send("/start")
    ann.expect_reply(
        "Welcome, Ann! Let's make your profile.\n\nWhat's your name?", keyboard=[["Cancel"]]
    )
    ann.send("Ann")
    ann.expect_reply("How old are you?", keyboard=[["Back", "Cancel"]])
    for bad in ("seventeen", "17"):
        ann.send(bad)
        ann.expect_reply("Please send your age as a whole number from 18 to 120.")
    ann.send("30")
    question = ann.expect_reply(
        "Are you a man or a woman?", keyboard=[["Man", "Woman"], ["Back", "Cancel"]]
    )
    # Back edits the question in place, offering to keep the answer given
    ann.press("Back", question)
    ann.expect_edit(question, "How old are you?", keyboard=[["Keep: 30"], ["Back", "Cancel"]])
    ann.press("Keep: 30", question)
    ann.expect_edit(question, "Are you a man or a woman?")
    ann.press("Woman", question)
    ann.expect_edit(question, "Who would you like to meet?")
    ann.press("Men", question)
    ann.expect_edit(
        question, "Send me a photo of yourself.", keyboard=[["Skip"], ["Back", "Cancel"]]
    )
    ann.send("here")
    ann.expect_reply(contains="That's not a photo")
    ann.send_photo()
    ann.expect_reply("Write a few words about yourself (up to 500 characters).")
    ann.send("I like jazz")
    ann.expect_reply("All set! This is how others see you:")
    card = ann.expect_reply("Ann, 30\nI like jazz\nWoman, looking for men")
    assert card.raw["media"], card.describe()
    ann.expect_reply(
        "What would you like to do?", keyboard=[["Browse profiles", "My profile"], ["Language"]]
    )
    assert profile_row(tgfleet_settings, bot, ann) == (
        "Ann",
        30,
        "female",
        "male",
        "I like jazz",
        True,
        "pending",
    )
    # The admin is asked to review her, with the buttons to do it
    review = boss.expect_reply(
        contains=f"Profile to review (#{ann.id}):", keyboard=[["Approve", "Ban"], ["Menu"]]
    )

    # Cleo registers too; Oleg's app speaks Russian, so the bot does
    cleo = tgfleet_user("Cleo")
    register(cleo, "Cleo", 27, "Woman", "Anyone", photo=True)
    oleg = tgfleet_user("Oleg", lang_code="ru")
    oleg.send("/start")
    oleg.expect_reply(contains="Добро пожаловать, Oleg!", keyboard=[["Отмена"]])
    oleg.send("/cancel")
    oleg.expect_reply("Отменено. Пришлите /start, когда будете готовы.")
    register(oleg, "Oleg", 33, "Мужчина", "С женщинами", photo=False, skip="Пропустить")
    menu = oleg.last_message()
    assert menu.keyboard == [["Смотреть анкеты", "Моя анкета"], ["Язык"]]

    # Oleg browses: the menu turns into the newest profile's card, with the verdict buttons
    oleg.press("Смотреть анкеты", menu)
    first = oleg.expect_edit(
        menu,
        "Cleo, 27\nЖенщина, ищет кого угодно",
        keyboard=[["❤️ Нравится", "Пропустить"], ["Пожаловаться", "Меню"]],
    )
    # A verdict turns the same card into the next profile, photo and all
    oleg.press("❤️ Нравится", first)
    second = oleg.expect_edit(first, contains="Ann, 30")
    assert first.raw["media"] and second.raw["media"] != first.raw["media"]
    # No one is left: an edit cannot take a photo away, so the card is sent anew
    oleg.press("❤️ Нравится", second)
    oleg.expect_deleted(second)
    oleg.expect_reply("Пока это все. Загляните позже!", keyboard=[["Меню"]])

    # Ann likes Oleg back: both hear of the match, each in their language, with a chat button
    ann.press("Browse profiles")
    oleg_card = ann.expect_edit(ann.last_message(), contains="Oleg, 33")
    ann.press("❤️ Like", oleg_card)
    ann.expect_reply("It's a match with Oleg! Say hello.", keyboard=[["Open a chat with Oleg"]])
    match = oleg.expect_reply("У вас взаимная симпатия с Ann! Напишите первым.")
    assert match.raw["markup"]["inline"][0][0]["url"] == f"tg://user?id={ann.id}"

    # The admin bans Ann from the review message: she is told, and nobody sees her again
    boss.press("Ban", review)
    boss.expect_edit(review, contains="Waiting for review")
    ann.expect_reply("Your profile was blocked by the moderators.")
    assert profile_row(tgfleet_settings, bot, ann)[-1] == "banned"


def test_a_legacy_profile_is_shown_and_completed_at_the_next_start(
    tgfleet_bot: Any, tgfleet_user: Any, tgfleet_settings: Settings
) -> None:
    bot = tgfleet_bot("matchmaking")
    dan = tgfleet_user("Dan")
    # Dan's profile came from the legacy JSON store: no gender, a Bot API photo id
    query(
        tgfleet_settings,
        "INSERT INTO profiles (bot_id, user_id, display_name, age, city, looking_for, "
        "photo_file_id) VALUES (%s, %s, 'Dan', 41, 'Oslo', 'female', 'AgACAgIAAxk') "
        "RETURNING user_id",
        bot.id,
        dan.id,
    )
    # Others see him (as a text card: a Bot API file id cannot be sent over MTProto)
    eve = tgfleet_user("Eve")
    register(eve, "Eve", 35, "Woman", "Men", photo=False)
    eve.press("Browse profiles")
    card = eve.expect_edit(eve.last_message(), contains="Dan, 41\nOslo")
    assert not card.raw["media"]
    # His next /start asks only what is missing, offering to keep the rest
    dan.send("/start")
    question = dan.expect_reply(
        "Welcome back, Dan! Your profile needs a few more details.\n\nAre you a man or a woman?",
        keyboard=[["Man", "Woman"], ["Back", "Cancel"]],
    )
    dan.press("Man", question)
    dan.press("Keep: Women", question)
    dan.press("Skip", question)  # no photo this bot could send
    dan.expect_edit(question, contains="500")
    dan.press("Skip", question)  # no bio
    dan.expect_edit(question, "All set! This is how others see you:")
    dan.expect_reply("Dan, 41\nOslo\nMan, looking for women")
    assert profile_row(tgfleet_settings, bot, dan) == (
        "Dan",
        41,
        "male",
        "female",
        None,
        False,
        "pending",
    )


def test_a_user_picks_a_language_and_keeps_it(tgfleet_bot: Any, tgfleet_user: Any) -> None:
    tgfleet_bot("matchmaking")
    zoe = tgfleet_user("Zoe")
    zoe.send("/language")
    choice = zoe.expect_reply("Choose your language:", keyboard=[["English", "Русский"], ["Menu"]])
    zoe.press("Русский", choice)
    zoe.expect_edit(choice, contains="Теперь я говорю с вами на языке: Русский.")
    # The choice is stored: later updates are answered in it
    zoe.send("/help")
    zoe.expect_reply(contains="Я помогаю знакомиться.")
