"""Stored reply markups: checked again (they come from the database) and turned into TL."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from telethon.tl import types

from tgfleet.sends.markup import check_markup, to_tl

LIKE = base64.b64encode(b"vote:like:42").decode()


def callback_of(button: Any) -> tuple[str, bytes]:
    """(text, data) of a callback button, in either Telethon layer's spelling."""
    data = button.type.data if hasattr(button, "type") else button.data
    return button.text, data


def url_of(button: Any) -> tuple[str, str]:
    url = button.type.url if hasattr(button, "type") else button.url
    return button.text, url


def test_an_inline_markup_becomes_rows_of_callback_and_url_buttons() -> None:
    markup = to_tl(
        {"inline": [[{"text": "Like", "data": LIKE}, {"text": "Open", "url": "https://x.org"}]]}
    )
    assert isinstance(markup, types.ReplyInlineMarkup)
    [row] = markup.rows
    like, link = row.buttons
    assert callback_of(like) == ("Like", b"vote:like:42")
    assert url_of(link) == ("Open", "https://x.org")


def test_a_reply_keyboard_and_a_removal() -> None:
    markup = to_tl(
        {
            "keyboard": [["Yes", "No"], ["Later"]],
            "resize": True,
            "one_time": True,
            "placeholder": "Pick",
        }
    )
    assert isinstance(markup, types.ReplyKeyboardMarkup)
    assert [[b.text for b in row.buttons] for row in markup.rows] == [["Yes", "No"], ["Later"]]
    assert (markup.resize, markup.single_use, markup.placeholder) == (True, True, "Pick")
    defaults = to_tl({"keyboard": [["A"]]})
    assert isinstance(defaults, types.ReplyKeyboardMarkup)
    assert (defaults.resize, defaults.single_use, defaults.placeholder) == (False, False, None)
    assert isinstance(to_tl({"remove": True}), types.ReplyKeyboardHide)
    assert to_tl(None) is None


def test_an_empty_inline_markup_removes_buttons() -> None:
    markup = to_tl({"inline": []})
    assert isinstance(markup, types.ReplyInlineMarkup) and markup.rows == []


def button(**fields: Any) -> dict[str, Any]:
    return {"inline": [[{"text": "x", **fields}]]}


@pytest.mark.parametrize(
    ("markup", "message"),
    [
        ([], r"a reply markup must be a dict, got list"),
        ({}, r"needs exactly one of \['inline', 'keyboard', 'remove'\], got \[\]"),
        ({"inline": [], "remove": True}, r"needs exactly one of"),
        ({"remove": False}, r"a keyboard removal is exactly \{'remove': true\}"),
        ({"inline": [{"text": "x"}]}, r"'inline' must be a list of rows"),
        ({"inline": [[]]}, r"inline keyboard row 1 is empty"),
        (
            {"inline": [[{"text": "x", "url": "https://a.org"}]], "resize": True},
            r"has only 'inline'",
        ),
        (button(), r"inline button 1 of row 1 needs exactly one of 'data' or 'url'"),
        (button(data=LIKE, url="https://a.org"), r"needs exactly one of 'data' or 'url'"),
        (button(data="not base64!"), r"inline button 1 of row 1: data must be base64"),
        (button(data=""), r"callback data is 0 bytes; Telegram allows 1 to 64 bytes"),
        (
            button(data=base64.b64encode(b"x" * 65).decode()),
            r"is 65 bytes; Telegram allows 1 to 64",
        ),
        (button(url="javascript:alert(1)"), r"must start with one of http://, https://, tg://"),
        (button(url=5), r"must start with one of"),
        (button(data=LIKE, style="red"), r"has unknown keys \['style'\]"),
        ({"inline": [["Like"]]}, r"inline button 1 of row 1 must be a dict"),
        ({"inline": [[{"text": "", "data": LIKE}]]}, r"a button needs a non-empty text"),
        (
            {"inline": [[{"text": "x", "data": LIKE}] * 9]},
            r"row 1 has 9 buttons; at most 8 fit in a row",
        ),
        (
            {"inline": [[{"text": "x", "data": LIKE}] * 8] * 13},
            r"has 104 buttons; at most 100 are allowed",
        ),
        ({"keyboard": [["a"] * 11]}, r"reply keyboard row 1 has 11 buttons; at most 10"),
        ({"keyboard": [["a"]] * 301}, r"reply keyboard has 301 buttons; at most 300"),
        ({"keyboard": [[" "]]}, r"reply button 1 of row 1: a button needs a non-empty text"),
        ({"keyboard": [["a"]], "resize": "yes"}, r"'resize' must be true or false"),
        ({"keyboard": [["a"]], "placeholder": ""}, r"placeholder must be 1 to 64 characters"),
        ({"keyboard": [["a"]], "colour": 1}, r"unknown keys \['colour'\]"),
    ],
)
def test_bad_markups_are_refused_with_what_is_wrong(markup: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_tl(markup)


def test_a_valid_markup_is_returned_as_it_is() -> None:
    markup = {"keyboard": [["a"]], "resize": True, "one_time": False, "placeholder": None}
    assert check_markup(markup) is markup
