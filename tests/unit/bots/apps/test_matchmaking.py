"""The matchmaking app's parts that need no services: its input rules, its buttons (every
one fits Telegram's 64 bytes), its cards, and its translations (complete, their
placeholders intact, the compiled catalogs up to date)."""

from __future__ import annotations

import io
import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from tgfleet.bots.apps.matchmaking import I18N, LANGUAGES
from tgfleet.bots.apps.matchmaking.common import LOCALES, Menu, Mod, Vote, card_text
from tgfleet.bots.apps.matchmaking.registration import (
    STEPS,
    Invalid,
    _valid,
    parse_age,
    parse_bio,
    parse_name,
    question,
    question_keyboard,
)
from tgfleet.db import Profile

APP_DIR = LOCALES.parent
TRANSLATED = [code for code in LANGUAGES if code != I18N.default]


def english(message: str) -> str:
    return message


@pytest.mark.parametrize(
    ("parse", "raw", "stored"),
    [
        (parse_name, "  Ann   Smith ", "Ann Smith"),
        (parse_age, " 30 ", 30),
        (parse_age, "18", 18),
        (parse_age, "120", 120),
        (parse_bio, "x" * 500, "x" * 500),
    ],
)
def test_good_answers_are_normalised(parse: object, raw: str, stored: object) -> None:
    assert parse(raw) == stored  # type: ignore[operator]


@pytest.mark.parametrize(
    ("parse", "raw", "says"),
    [
        (parse_name, "   ", "A name is 1 to 64 characters. What's your name?"),
        (parse_name, "n" * 65, "A name is 1 to 64 characters. What's your name?"),
        (parse_name, "/browse", "A name is 1 to 64 characters. What's your name?"),
        (parse_age, "17", "Please send your age as a whole number from 18 to 120."),
        (parse_age, "121", "Please send your age as a whole number from 18 to 120."),
        (parse_age, "thirty", "Please send your age as a whole number from 18 to 120."),
        (parse_age, "-20", "Please send your age as a whole number from 18 to 120."),
        (parse_bio, "x" * 501, "A bio is 1 to 500 characters. Try a shorter one?"),
    ],
)
def test_bad_answers_say_what_is_allowed(parse: object, raw: str, says: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse(raw)  # type: ignore[operator]
    assert caught.value.text(english) == says


def test_the_biggest_buttons_fit_telegrams_64_bytes() -> None:
    biggest = -(2**63)
    for data in (
        Vote(action="report", target=biggest, photo=True),
        Mod(action="approve", target=biggest, photo=True),
        Menu(action="delete_yes", photo=True),
    ):
        assert len(data.pack().encode()) <= 64


def test_each_question_offers_back_cancel_and_what_it_may_keep() -> None:
    def labels(step: str, data: dict[str, object]) -> list[list[str]]:
        markup = question_keyboard(step, data, english).to_dict()["inline"]
        return [[button["text"] for button in row] for row in markup]

    assert labels("name", {}) == [["Cancel"]]
    assert labels("age", {"age": 30}) == [["Keep: 30"], ["Back", "Cancel"]]
    assert labels("gender", {}) == [["Man", "Woman"], ["Back", "Cancel"]]
    assert labels("looking_for", {"looking_for": "any"}) == [
        ["Men", "Women", "Anyone"],
        ["Keep: Anyone"],
        ["Back", "Cancel"],
    ]
    assert labels("photo", {}) == [["Skip"], ["Back", "Cancel"]]
    assert labels("bio", {"bio": "b" * 40})[0] == ["Keep: " + "b" * 23 + "…"]
    assert [question(step, english)[-1] for step in STEPS] == ["?", "?", "?", "?", ".", "."]


def test_a_card_shows_what_the_profile_says() -> None:
    ann = Profile(display_name="Ann", age=30, city="Oslo", bio="Jazz", gender="female")
    ann.looking_for = "male"
    assert card_text(ann, english) == "Ann, 30\nOslo\nJazz\nWoman, looking for men"
    russian = I18N.catalog("ru").gettext
    assert card_text(ann, russian) == "Ann, 30\nOslo\nJazz\nЖенщина, ищет мужчину"
    legacy = Profile(display_name="Dan", age=41, looking_for="female")
    assert card_text(legacy, english) == "Dan, 41\nLooking for women"


def test_the_language_is_the_users_choice_else_telegrams_else_english() -> None:
    assert I18N.language("ru") == "ru"
    assert I18N.language("ru-UA") == "ru"
    assert I18N.language("de") == "en"
    assert I18N.language(None) == "en"


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _source_messages() -> set[str]:
    found = extract_from_dir(str(APP_DIR), keywords={"_": None, "N_": None})
    return {message for _, _, message, _, _ in found if isinstance(message, str)}


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_message_is_translated_with_its_placeholders(code: str) -> None:
    path = LOCALES / code / "LC_MESSAGES" / "matchmaking.po"
    catalog = read_po(path.open("rb"))
    translations = {m.id: m.string for m in catalog if m.id}
    missing = sorted(_source_messages() - set(translations))
    assert not missing, f"not in {path.name} ({code}); run `make i18n` and translate: {missing}"
    for message_id, translated in translations.items():
        assert translated, f"{code}: {message_id!r} has no translation"
        assert _placeholders(translated) == _placeholders(str(message_id)), message_id


@pytest.mark.parametrize("code", TRANSLATED)
def test_the_compiled_catalog_is_the_translated_one(code: str) -> None:
    folder = LOCALES / code / "LC_MESSAGES"
    compiled = io.BytesIO()
    write_mo(compiled, read_po((folder / "matchmaking.po").open("rb")))
    assert Path(folder / "matchmaking.mo").read_bytes() == compiled.getvalue(), (
        f"{folder / 'matchmaking.mo'} is older than its .po: run `make i18n`"
    )


def test_stored_values_that_break_todays_rules_are_asked_again() -> None:
    assert _valid("age", 30) and not _valid("age", 15)
    assert _valid("looking_for", "any") and not _valid("looking_for", "cats")
    assert _valid("name", "Dan") and not _valid("name", "n" * 65)
