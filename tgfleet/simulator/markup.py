"""Reply markup (inline and reply keyboards): checked as Telegram checks it, stored as the
JSON the control API shows, and rendered back to TL for the bot's own view.

JSON forms::

    {"inline": [[{"type": "callback", "text", "data", "data_b64"}, {"type": "url", "text",
                 "url"}, ...], ...]}
    {"keyboard": [[{"type": "text", "text"}, ...]], "resize", "one_time", "selective",
     "persistent", "placeholder"}
    {"remove": true, "selective"}
    {"force_reply": true, "one_time", "selective", "placeholder"}

``data`` is the callback data as UTF-8 text (null when it is not valid UTF-8); ``data_b64``
is always its base64.
"""

from __future__ import annotations

import base64
from typing import Any

from telethon.tl import types

from tgfleet.simulator.world import WorldError

MAX_CALLBACK_DATA = 64
MAX_BUTTON_TEXT = 512
MAX_INLINE_ROW = 8
MAX_KEYBOARD_ROW = 12
MAX_ROWS = 100
MAX_BUTTONS = 100
_URL_SCHEMES = ("http://", "https://", "tg://")

Markup = dict[str, Any]


def _text(button: Any) -> str:
    text = button.text
    if not text or not text.strip() or len(text) > MAX_BUTTON_TEXT:
        raise WorldError(400, "BUTTON_TEXT_INVALID")
    return str(text)


def _inline_button(button: Any) -> dict[str, Any]:
    if not isinstance(button, types.KeyboardInlineButton):
        raise WorldError(400, "BUTTON_TYPE_INVALID")
    kind = button.type
    if isinstance(kind, types.InlineButtonTypeCallback):
        data = bytes(kind.data)
        if not 1 <= len(data) <= MAX_CALLBACK_DATA:
            raise WorldError(400, "BUTTON_DATA_INVALID")
        try:
            text_data: str | None = data.decode("utf-8")
        except UnicodeDecodeError:
            text_data = None
        return {
            "type": "callback",
            "text": _text(button),
            "data": text_data,
            "data_b64": base64.b64encode(data).decode(),
        }
    if isinstance(kind, types.InlineButtonTypeUrl):
        if not kind.url.startswith(_URL_SCHEMES) or len(kind.url) > 2048:
            raise WorldError(400, "BUTTON_URL_INVALID")
        return {"type": "url", "text": _text(button), "url": kind.url}
    if isinstance(kind, types.InlineButtonTypeSwitchInline):
        return {"type": "switch_inline", "text": _text(button), "query": kind.query}
    raise WorldError(400, "BUTTON_TYPE_INVALID")


_KEYBOARD_KINDS = {
    types.ButtonTypeDefault: "text",
    types.ButtonTypeRequestPhone: "request_phone",
    types.ButtonTypeRequestGeoLocation: "request_location",
}


def _keyboard_button(button: Any) -> dict[str, Any]:
    kind = _KEYBOARD_KINDS.get(type(getattr(button, "type", None)))
    if not isinstance(button, types.KeyboardButton) or kind is None:
        raise WorldError(400, "BUTTON_TYPE_INVALID")
    return {"type": kind, "text": _text(button)}


def _rows(rows: list[Any], per_row: int, convert: Any) -> list[list[dict[str, Any]]]:
    if len(rows) > MAX_ROWS or sum(len(r.buttons) for r in rows) > MAX_BUTTONS:
        raise WorldError(400, "REPLY_MARKUP_TOO_LONG")
    if any(len(r.buttons) > per_row for r in rows):
        raise WorldError(400, "REPLY_MARKUP_TOO_LONG")
    return [[convert(b) for b in row.buttons] for row in rows if row.buttons]


def markup_json(markup: Any) -> Markup | None:
    """Check a ``ReplyMarkup`` the bot sent and return its JSON form (None: no markup)."""
    if markup is None:
        return None
    if isinstance(markup, types.ReplyInlineMarkup):
        rows = _rows(markup.rows, MAX_INLINE_ROW, _inline_button)
        return {"inline": rows} if rows else None
    if isinstance(markup, types.ReplyKeyboardMarkup):
        rows = _rows(markup.rows, MAX_KEYBOARD_ROW, _keyboard_button)
        if not rows:
            raise WorldError(400, "REPLY_MARKUP_INVALID")
        return {
            "keyboard": rows,
            "resize": bool(markup.resize),
            "one_time": bool(markup.single_use),
            "selective": bool(markup.selective),
            "persistent": bool(markup.persistent),
            "placeholder": markup.placeholder,
        }
    if isinstance(markup, types.ReplyKeyboardHide):
        return {"remove": True, "selective": bool(markup.selective)}
    if isinstance(markup, types.ReplyKeyboardForceReply):
        return {
            "force_reply": True,
            "one_time": bool(markup.single_use),
            "selective": bool(markup.selective),
            "placeholder": markup.placeholder,
        }
    raise WorldError(400, "REPLY_MARKUP_INVALID")


def _inline_tl(button: dict[str, Any]) -> types.KeyboardInlineButton:
    kind: Any
    if button["type"] == "callback":
        kind = types.InlineButtonTypeCallback(base64.b64decode(button["data_b64"]))
    elif button["type"] == "url":
        kind = types.InlineButtonTypeUrl(button["url"])
    else:
        kind = types.InlineButtonTypeSwitchInline(button.get("query", ""))
    return types.KeyboardInlineButton(button["text"], kind)


def _keyboard_tl(button: dict[str, Any]) -> types.KeyboardButton:
    kinds = {name: cls for cls, name in _KEYBOARD_KINDS.items()}
    return types.KeyboardButton(button["text"], kinds[button["type"]]())


def markup_tl(markup: Markup | None) -> types.TypeReplyMarkup | None:
    """The TL form of a stored markup (what the bot sees in its own messages)."""
    if markup is None:
        return None
    if "inline" in markup:
        return types.ReplyInlineMarkup(
            [
                types.KeyboardInlineButtonRow([_inline_tl(b) for b in row])
                for row in markup["inline"]
            ]
        )
    if "keyboard" in markup:
        return types.ReplyKeyboardMarkup(
            [types.KeyboardButtonRow([_keyboard_tl(b) for b in row]) for row in markup["keyboard"]],
            resize=markup["resize"] or None,
            single_use=markup["one_time"] or None,
            selective=markup["selective"] or None,
            persistent=markup["persistent"] or None,
            placeholder=markup["placeholder"],
        )
    if markup.get("remove"):
        return types.ReplyKeyboardHide(selective=markup["selective"] or None)
    return types.ReplyKeyboardForceReply(
        single_use=markup["one_time"] or None,
        selective=markup["selective"] or None,
        placeholder=markup["placeholder"],
    )


def find_callback(
    markup: Markup | None, text: str | None = None, data: bytes | None = None
) -> dict[str, Any] | None:
    """The inline callback button with this text (or this data), if the markup has one."""
    if markup is None:
        return None
    for row in markup.get("inline", []):
        for button in row:
            if text is not None and button["text"] != text:
                continue
            if data is not None and (
                button["type"] != "callback" or base64.b64decode(button["data_b64"]) != data
            ):
                continue
            return dict(button)
    return None
