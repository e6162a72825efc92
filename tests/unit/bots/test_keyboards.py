"""Keyboard builders: rows, adjust, the stored JSON form, Telegram's limits checked when built."""

from __future__ import annotations

import base64

import pytest

from tgfleet.bots import CallbackData, InlineKeyboard, RemoveKeyboard, ReplyKeyboard


class Vote(CallbackData, prefix="vote"):
    action: str
    profile_id: int


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_an_inline_keyboard_serialises_callback_and_url_buttons() -> None:
    # Given buttons from typed data, text, bytes and a link, adjusted to rows of 2 then 1
    keyboard = (
        InlineKeyboard()
        .button("Like", callback=Vote(action="like", profile_id=42))
        .button("Skip", callback="skip:42")
        .button("Raw", callback=b"\x01")
        .url("Open", "https://example.org/p")
        .adjust(2, 1)
    )
    # Then the stored form has the rows and base64 data
    assert keyboard.to_dict() == {
        "inline": [
            [
                {"text": "Like", "data": b64(b"vote:like:42")},
                {"text": "Skip", "data": b64(b"skip:42")},
            ],
            [{"text": "Raw", "data": b64(b"\x01")}],
            [{"text": "Open", "url": "https://example.org/p"}],
        ]
    }


def test_row_starts_a_new_row_and_an_empty_row_is_dropped() -> None:
    keyboard = InlineKeyboard().row().button("A", "a").row().row().button("B", "b").button("C", "c")
    assert [[b.text for b in row] for row in keyboard.as_markup().rows] == [["A"], ["B", "C"]]


def test_adjust_repeats_the_last_size_or_cycles() -> None:
    keyboard = InlineKeyboard()
    for n in range(7):
        keyboard.button(str(n), str(n))
    assert [len(r) for r in keyboard.adjust(3, 1).as_markup().rows] == [3, 1, 1, 1, 1]
    assert [len(r) for r in keyboard.adjust(3, 1, repeat_sizes=True).as_markup().rows] == [3, 1, 3]
    with pytest.raises(ValueError, match=r"row sizes of at least 1"):
        keyboard.adjust(0)


def test_a_reply_keyboard_and_a_removal() -> None:
    keyboard = (
        ReplyKeyboard(resize=True, one_time=True, placeholder="Pick")
        .button("Yes")
        .button("No")
        .row()
        .button("Later")
    )
    assert keyboard.to_dict() == {
        "keyboard": [["Yes", "No"], ["Later"]],
        "resize": True,
        "one_time": True,
        "placeholder": "Pick",
    }
    assert RemoveKeyboard().to_dict() == {"remove": True}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: InlineKeyboard().button("x", b""), r"is 0 bytes; Telegram allows 1 to 64 bytes"),
        (lambda: InlineKeyboard().button("x", "y" * 65), r"is 65 bytes; Telegram allows 1 to 64"),
        (lambda: InlineKeyboard().button("  ", "y"), r"a button needs a non-empty text"),
        (
            lambda: InlineKeyboard().url("x", "ftp://a.org"),
            r"must start with one of http://, https://, tg://",
        ),
        (lambda: InlineKeyboard().url("x", "https:///path"), r"has no host"),
        (lambda: ReplyKeyboard().button(""), r"a button needs a non-empty text"),
    ],
)
def test_bad_buttons_are_refused_when_added(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_a_tg_link_is_a_valid_url() -> None:
    assert (
        InlineKeyboard().url("Chat", "tg://resolve?domain=x").to_dict()["inline"][0][0]["url"]
        == "tg://resolve?domain=x"
    )


def test_at_most_8_inline_buttons_a_row_and_100_in_all() -> None:
    # Given a row of 8 (fine) and a row of 9
    row = InlineKeyboard()
    for n in range(9):
        row.button(str(n), str(n))
    with pytest.raises(
        ValueError, match=r"inline keyboard row 1 has 9 buttons; at most 8 fit in a row"
    ):
        row.as_markup()
    assert len(row.adjust(8).as_markup().rows[0]) == 8
    # And 101 buttons in rows of 8
    many = InlineKeyboard()
    for n in range(101):
        many.button(str(n), str(n))
    with pytest.raises(
        ValueError, match=r"inline keyboard has 101 buttons; at most 100 are allowed"
    ):
        many.adjust(8).as_markup()
    many._rows[-2].pop()  # 100 buttons
    assert sum(len(r) for r in many.as_markup().rows) == 100


def test_reply_keyboard_limits_and_placeholder() -> None:
    wide = ReplyKeyboard()
    for n in range(11):
        wide.button(str(n))
    with pytest.raises(ValueError, match=r"reply keyboard row 1 has 11 buttons; at most 10"):
        wide.to_dict()
    with pytest.raises(ValueError, match=r"placeholder must be 1 to 64 characters"):
        ReplyKeyboard(placeholder="p" * 65).button("a").to_dict()
