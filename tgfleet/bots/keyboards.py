"""Keyboard builders: what ``ctx.reply(..., keyboard=...)`` attaches to a message.

    keyboard = (
        InlineKeyboard()
        .button("Like", callback=Vote(action="like", profile_id=42))
        .button("Skip", callback="skip:42")
        .url("Open", "https://example.org")
        .adjust(2, 1)
    )
    ctx.reply("Ann, 30", keyboard=keyboard)
    ctx.reply("Sure?", keyboard=ReplyKeyboard(one_time=True).button("Yes").button("No"))
    ctx.reply("Done.", keyboard=RemoveKeyboard())

``button``/``url`` add to the current row, ``row()`` starts a new one, ``adjust(2, 1)``
re-flows all buttons into rows of 2, then 1 (the last size repeats; ``repeat=True``
cycles through the sizes). A keyboard is checked when it is built (``as_markup()``,
``to_dict()``, or when a reply takes it): ``ValueError`` naming the limit.

What the outbox stores is ``to_dict()``, the JSON format documented (and checked again
before sending) in ``tgfleet.sends.markup``:

    {"inline": [[{"text": "Like", "data": "<base64>"}, {"text": "Open", "url": "https://..."}]]}
    {"keyboard": [["Yes", "No"]], "resize": true, "one_time": true, "placeholder": null}
    {"remove": true}
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from itertools import chain, cycle, repeat
from typing import Any, Generic, Self, TypeVar

from tgfleet.bots.callback_data import CallbackData
from tgfleet.sends.markup import check_callback_data, check_markup, check_text, check_url


@dataclass(frozen=True)
class InlineButton:
    text: str
    data: bytes | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.data is not None:
            return {"text": self.text, "data": base64.b64encode(self.data).decode()}
        return {"text": self.text, "url": self.url}


@dataclass(frozen=True)
class InlineMarkup:
    rows: tuple[tuple[InlineButton, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"inline": [[button.to_dict() for button in row] for row in self.rows]}


@dataclass(frozen=True)
class ReplyMarkup:
    rows: tuple[tuple[str, ...], ...]
    resize: bool = True
    one_time: bool = False
    placeholder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyboard": [list(row) for row in self.rows],
            "resize": self.resize,
            "one_time": self.one_time,
            "placeholder": self.placeholder,
        }


@dataclass(frozen=True)
class RemoveKeyboard:
    """Hides the reply keyboard the user has."""

    def to_dict(self) -> dict[str, Any]:
        return {"remove": True}

    def as_markup(self) -> RemoveKeyboard:
        return self


Markup = InlineMarkup | ReplyMarkup | RemoveKeyboard


B = TypeVar("B")


class _Builder(Generic[B]):
    def __init__(self) -> None:
        self._rows: list[list[B]] = [[]]

    def _add(self, button: B) -> Self:
        self._rows[-1].append(button)
        return self

    def row(self) -> Self:
        """Start a new row (a no-op when the current one is empty)."""
        if self._rows[-1]:
            self._rows.append([])
        return self

    def adjust(self, *sizes: int, repeat_sizes: bool = False) -> Self:
        """Re-flow every button into rows of ``sizes`` (then the last size again, or the
        sizes over again with ``repeat_sizes=True``)."""
        if not sizes or any(size < 1 for size in sizes):
            raise ValueError(f"adjust() needs row sizes of at least 1, got {sizes}")
        buttons = [button for row in self._rows for button in row]
        widths = cycle(sizes) if repeat_sizes else chain(sizes, repeat(sizes[-1]))
        self._rows = []
        while buttons:
            width = next(widths)
            self._rows.append(buttons[:width])
            buttons = buttons[width:]
        self._rows.append([])
        return self

    def _built_rows(self) -> tuple[tuple[B, ...], ...]:
        return tuple(tuple(row) for row in self._rows if row)


class InlineKeyboard(_Builder[InlineButton]):
    """Buttons under a message: callback buttons (``ctx.callback`` when pressed) and links."""

    def button(self, text: str, callback: CallbackData | str | bytes) -> Self:
        if isinstance(callback, CallbackData):
            data = callback.pack().encode()
        elif isinstance(callback, str):
            data = callback.encode()
        else:
            data = bytes(callback)
        check_text(text, f"inline button {text!r}")
        check_callback_data(data, f"inline button {text!r}: callback data {data!r}")
        return self._add(InlineButton(text, data=data))

    def url(self, text: str, url: str) -> Self:
        check_text(text, f"inline button {text!r}")
        check_url(url, f"inline button {text!r}")
        return self._add(InlineButton(text, url=url))

    def as_markup(self) -> InlineMarkup:
        markup = InlineMarkup(self._built_rows())
        check_markup(markup.to_dict())
        return markup

    def to_dict(self) -> dict[str, Any]:
        return self.as_markup().to_dict()


class ReplyKeyboard(_Builder[str]):
    """A keyboard that replaces the user's: each button sends its text."""

    def __init__(
        self, *, resize: bool = True, one_time: bool = False, placeholder: str | None = None
    ) -> None:
        super().__init__()
        self.resize, self.one_time, self.placeholder = resize, one_time, placeholder

    def button(self, text: str) -> Self:
        check_text(text, f"reply button {text!r}")
        return self._add(text)

    def as_markup(self) -> ReplyMarkup:
        markup = ReplyMarkup(self._built_rows(), self.resize, self.one_time, self.placeholder)
        check_markup(markup.to_dict())
        return markup

    def to_dict(self) -> dict[str, Any]:
        return self.as_markup().to_dict()


KeyboardLike = InlineKeyboard | ReplyKeyboard | Markup


def markup_dict(keyboard: KeyboardLike | dict[str, Any]) -> dict[str, Any]:
    """The stored form of a keyboard (a dict is checked as it is)."""
    if isinstance(keyboard, dict):
        return check_markup(keyboard)
    return check_markup(keyboard.to_dict())
