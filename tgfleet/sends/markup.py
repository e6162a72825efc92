"""Reply markups as the outbox stores them (a JSON-able dict), checked and turned into TL.

A handler builds a keyboard with ``tgfleet.bots.InlineKeyboard`` / ``ReplyKeyboard`` /
``RemoveKeyboard``; what lands in the outbox's ``reply_markup`` column is one of:

    {"inline": [[{"text": "Like", "data": "<base64 of 1..64 bytes>"},
                 {"text": "Open", "url": "https://example.org"}]]}
    {"keyboard": [["Yes", "No"], ["Later"]], "resize": true, "one_time": true,
     "placeholder": null}
    {"remove": true}

An inline button has ``text`` and exactly one of ``data`` (callback data, base64) or
``url`` (http, https or tg). ``{"inline": []}`` is allowed: editing a message with it
removes its buttons. ``resize``, ``one_time`` and ``placeholder`` may be left out
(false, false, none).

The limits are Telegram's: callback data is 1 to 64 bytes (Bot API, InlineKeyboardButton),
an input field placeholder 1 to 64 characters (ReplyKeyboardMarkup). Telegram rejects
bigger keyboards without documenting where the line is; the figures used here are the
ones aiogram's keyboard builders enforce (8 inline buttons a row, 100 in all; 10 reply
buttons a row, 300 in all).

``check_markup`` validates such a dict (the builder calls it when it builds, the sender
again, since the row came from the database); ``to_tl`` turns it into Telethon's types.
Errors are ``ValueError`` naming the button and the rule it breaks.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

from telethon.tl import types

#: Telegram's bounds on callback data, in bytes.
MIN_CALLBACK_DATA, MAX_CALLBACK_DATA = 1, 64
#: Inline keyboards: buttons a row, buttons in all.
MAX_INLINE_ROW, MAX_INLINE_BUTTONS = 8, 100
#: Reply keyboards: buttons a row, buttons in all.
MAX_REPLY_ROW, MAX_REPLY_BUTTONS = 10, 300
#: The input field placeholder of a reply keyboard, in characters.
MAX_PLACEHOLDER = 64
#: What an inline button's url may start with.
URL_SCHEMES = ("http", "https", "tg")

_KINDS = ("inline", "keyboard", "remove")


def check_url(url: str, where: str = "url") -> str:
    """``url`` if Telegram would take it for a button, else ValueError saying why."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme.lower() not in URL_SCHEMES:
        raise ValueError(f"{where}: {url!r} must start with one of http://, https://, tg://")
    if parts.scheme.lower() != "tg" and not parts.netloc:
        raise ValueError(f"{where}: {url!r} has no host")
    return url


def check_callback_data(data: bytes, where: str = "callback data") -> bytes:
    """``data`` if it fits Telegram's 1..64 bytes, else ValueError naming the size."""
    if not MIN_CALLBACK_DATA <= len(data) <= MAX_CALLBACK_DATA:
        raise ValueError(
            f"{where} is {len(data)} bytes; Telegram allows "
            f"{MIN_CALLBACK_DATA} to {MAX_CALLBACK_DATA} bytes"
        )
    return data


def check_text(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: a button needs a non-empty text, got {text!r}")
    return text


def _rows(markup: dict[str, Any], key: str) -> list[list[Any]]:
    rows = markup[key]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ValueError(f"markup {key!r} must be a list of rows (lists), got {rows!r}")
    return rows


def _check_size(rows: list[list[Any]], kind: str, per_row: int, in_all: int) -> None:
    for number, row in enumerate(rows, 1):
        if not row:
            raise ValueError(f"{kind} keyboard row {number} is empty")
        if len(row) > per_row:
            raise ValueError(
                f"{kind} keyboard row {number} has {len(row)} buttons; "
                f"at most {per_row} fit in a row"
            )
    total = sum(len(row) for row in rows)
    if total > in_all:
        raise ValueError(f"{kind} keyboard has {total} buttons; at most {in_all} are allowed")


def _inline_button(button: Any, where: str) -> bytes | str:
    """The button's callback data (bytes) or url (str)."""
    if not isinstance(button, dict):
        raise ValueError(f"{where} must be a dict with text and data or url, got {button!r}")
    check_text(button.get("text"), where)
    unknown = set(button) - {"text", "data", "url"}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
    if ("data" in button) == ("url" in button):
        raise ValueError(f"{where} needs exactly one of 'data' or 'url'")
    if "url" in button:
        return check_url(button["url"], where)
    try:
        data = base64.b64decode(button["data"], validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: data must be base64, got {button['data']!r}") from exc
    return check_callback_data(data, f"{where}: callback data")


def check_markup(markup: Any) -> dict[str, Any]:
    """``markup`` if it is a valid stored reply markup (see the module), else ValueError."""
    if not isinstance(markup, dict):
        raise ValueError(f"a reply markup must be a dict, got {type(markup).__name__}")
    kinds = [key for key in _KINDS if key in markup]
    if len(kinds) != 1:
        raise ValueError(
            f"a reply markup needs exactly one of {list(_KINDS)}, got {sorted(markup)}"
        )
    if kinds == ["remove"]:
        if markup["remove"] is not True or len(markup) != 1:
            raise ValueError(f"a keyboard removal is exactly {{'remove': true}}, got {markup!r}")
        return markup
    if kinds == ["inline"]:
        rows = _rows(markup, "inline")
        if len(markup) != 1:
            raise ValueError(f"an inline markup has only 'inline', got {sorted(markup)}")
        _check_size(rows, "inline", MAX_INLINE_ROW, MAX_INLINE_BUTTONS)
        for r, row in enumerate(rows, 1):
            for b, button in enumerate(row, 1):
                _inline_button(button, f"inline button {b} of row {r}")
        return markup
    rows = _rows(markup, "keyboard")
    unknown = set(markup) - {"keyboard", "resize", "one_time", "placeholder"}
    if unknown:
        raise ValueError(f"a reply keyboard has unknown keys {sorted(unknown)}")
    _check_size(rows, "reply", MAX_REPLY_ROW, MAX_REPLY_BUTTONS)
    for r, row in enumerate(rows, 1):
        for b, text in enumerate(row, 1):
            check_text(text, f"reply button {b} of row {r}")
    for flag in ("resize", "one_time"):
        if not isinstance(markup.get(flag, False), bool):
            raise ValueError(f"reply keyboard {flag!r} must be true or false")
    placeholder = markup.get("placeholder")
    if placeholder is not None and (
        not isinstance(placeholder, str) or not 1 <= len(placeholder) <= MAX_PLACEHOLDER
    ):
        raise ValueError(
            f"reply keyboard placeholder must be 1 to {MAX_PLACEHOLDER} characters, "
            f"got {placeholder!r}"
        )
    return markup


#: Telethon's newer layers (1.4x) spell buttons as a text plus a button type; older ones
#: have a class per kind of button. Both are supported.
_TYPED_BUTTONS = hasattr(types, "KeyboardInlineButton")


def _callback_button(text: str, data: bytes) -> Any:
    if _TYPED_BUTTONS:
        return types.KeyboardInlineButton(text, types.InlineButtonTypeCallback(data))
    return types.KeyboardButtonCallback(text, data)


def _url_button(text: str, url: str) -> Any:
    if _TYPED_BUTTONS:
        return types.KeyboardInlineButton(text, types.InlineButtonTypeUrl(url))
    return types.KeyboardButtonUrl(text, url)


def _inline_row(buttons: list[Any]) -> Any:
    if _TYPED_BUTTONS:
        return types.KeyboardInlineButtonRow(buttons)
    return types.KeyboardButtonRow(buttons)


def _text_button(text: str) -> Any:
    if _TYPED_BUTTONS:
        return types.KeyboardButton(text, types.ButtonTypeDefault())
    return types.KeyboardButton(text)


def to_tl(markup: dict[str, Any] | None) -> types.TypeReplyMarkup | None:
    """The Telethon reply markup of a stored one (None: none), checked first."""
    if markup is None:
        return None
    check_markup(markup)
    if "remove" in markup:
        return types.ReplyKeyboardHide()
    if "inline" in markup:
        rows = []
        for r, row in enumerate(markup["inline"], 1):
            buttons = []
            for b, button in enumerate(row, 1):
                target = _inline_button(button, f"inline button {b} of row {r}")
                if isinstance(target, bytes):
                    buttons.append(_callback_button(button["text"], target))
                else:
                    buttons.append(_url_button(button["text"], target))
            rows.append(_inline_row(buttons))
        return types.ReplyInlineMarkup(rows=rows)
    return types.ReplyKeyboardMarkup(
        rows=[
            types.KeyboardButtonRow([_text_button(text) for text in row])
            for row in markup["keyboard"]
        ],
        resize=markup.get("resize", False),
        single_use=markup.get("one_time", False),
        placeholder=markup.get("placeholder"),
    )
