"""What a simulated user sees: the bot's messages (as they are now: edits applied,
deletions marked) and the answers to their button presses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Labels = list[list[str]]


@dataclass(frozen=True)
class Received:
    """A message the bot sent the user, as the user sees it now."""

    id: int
    text: str
    #: The labels of its buttons, row by row (inline or reply keyboard; [] when none).
    keyboard: Labels
    #: Whether the bot edited it since it was sent.
    edited: bool
    #: Whether the bot deleted it.
    deleted: bool
    #: The simulator's record of it (``markup``, ``media``, ``reply_to``, ...).
    raw: dict[str, Any]

    @classmethod
    def from_simulator(cls, raw: dict[str, Any]) -> Received:
        return cls(
            id=int(raw["message_id"]),
            text=raw.get("text") or "",
            keyboard=keyboard_labels(raw.get("markup")),
            edited=bool(raw.get("edit_date")),
            deleted=bool(raw.get("deleted")),
            raw=raw,
        )

    @property
    def buttons(self) -> list[str]:
        """Every button's label, row after row."""
        return [label for row in self.keyboard for label in row]

    def describe(self) -> str:
        """One line: id, text, buttons and state."""
        marks = [mark for mark, on in (("edited", self.edited), ("deleted", self.deleted)) if on]
        keyboard = f" keyboard={self.keyboard}" if self.keyboard else ""
        state = f" ({', '.join(marks)})" if marks else ""
        return f"#{self.id} {self.text!r}{keyboard}{state}"


@dataclass(frozen=True)
class Answer:
    """What the bot answered to a button press (``answered`` False: it did not in time)."""

    answered: bool
    text: str | None
    alert: bool
    url: str | None
    raw: dict[str, Any]

    @classmethod
    def from_simulator(cls, raw: dict[str, Any]) -> Answer:
        return cls(
            answered=bool(raw.get("answered")),
            text=raw.get("message"),
            alert=bool(raw.get("alert")),
            url=raw.get("url"),
            raw=raw,
        )


def keyboard_labels(markup: dict[str, Any] | None) -> Labels:
    """The button labels, row by row, of the simulator's markup JSON."""
    if not markup:
        return []
    rows = markup.get("inline") or markup.get("keyboard") or []
    return [[str(button.get("text", "")) for button in row] for row in rows]


def describe_all(messages: list[Received]) -> str:
    """The messages, one per indented line (or "none")."""
    if not messages:
        return " none"
    return "".join(f"\n    {message.describe()}" for message in messages)
