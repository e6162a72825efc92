"""The matchmaking app's input rules, and its answers that need no database: help, usage,
validation errors, reports, and what it says to anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session
from telethon.tl import types

from tgfleet.bots.apps.matchmaking import FIELDS, HELP
from tgfleet.bots.runtime import BotView, handler_for
from tgfleet.inbox import InboundMessage

USER, ADMIN = 1001, 9


def handle(text: str) -> tuple[list[tuple[int, str]], list[dict[str, Any]]]:
    """(chat, text) of the replies and the events of one message to the matchmaking app.

    The session is unbound: a handler that queried the database would raise instead.
    """
    message = types.Message(
        id=3, peer_id=types.PeerUser(USER), date=datetime.now(UTC), message=text
    )
    inbound = InboundMessage(42, USER, USER, 3, text, message, "message")
    handler = handler_for(BotView(42, (ADMIN,), {"app": "matchmaking"}))
    effects = handler(Session(), inbound)
    assert effects is not None
    return [(r["chat_id"], r["text"]) for r in effects.outbox], effects.events


@pytest.mark.parametrize(
    ("field", "raw", "stored"),
    [
        ("name", "  Ann   Smith ", "Ann Smith"),
        ("age", " 30 ", 30),
        ("age", "18", 18),
        ("age", "120", 120),
        ("city", "Lisbon", "Lisbon"),
        ("bio", "x" * 500, "x" * 500),
    ],
)
def test_good_values_are_normalised(field: str, raw: str, stored: Any) -> None:
    assert FIELDS[field].parse(raw) == stored


@pytest.mark.parametrize(
    ("field", "raw", "rule"),
    [
        ("name", "   ", "a name of 1 to 64 characters"),
        ("name", "n" * 65, "a name of 1 to 64 characters"),
        ("age", "17", "a whole number from 18 to 120"),
        ("age", "121", "a whole number from 18 to 120"),
        ("age", "thirty", "a whole number from 18 to 120"),
        ("age", "-20", "a whole number from 18 to 120"),
        ("bio", "x" * 501, "a bio of 1 to 500 characters"),
    ],
)
def test_bad_values_say_what_is_allowed(field: str, raw: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        FIELDS[field].parse(raw)


def test_help_lists_the_commands() -> None:
    replies, _ = handle("/help")
    assert replies == [(USER, HELP)]


@pytest.mark.parametrize("text", ["/set", "/set colour blue", "/set age"])
def test_set_without_a_known_field_and_value_explains_usage(text: str) -> None:
    replies, events = handle(text)
    assert replies == [(USER, "Usage: /set name|age|city|bio|looking <value>, e.g. /set age 30")]
    assert events == []


def test_an_invalid_value_changes_nothing_and_is_counted() -> None:
    # When a user sets an age out of range, Then the reply says what is allowed, nothing
    # is stored (the session was never used), and a validation error is recorded
    replies, events = handle("/set AGE 12")
    assert replies == [(USER, "Age must be a whole number from 18 to 120. Nothing was changed.")]
    assert events == [{"kind": "validation_error", "user_id": USER, "data": {"field": "age"}}]


def test_a_report_reaches_the_admins() -> None:
    replies, events = handle("/report #77 fake photos")
    assert replies == [
        (ADMIN, f"Report: user #{USER} reported #77: fake photos"),
        (USER, "Thanks, the admins were told."),
    ]
    assert events[0]["data"] == {"target": 77}


@pytest.mark.parametrize(
    ("text", "opening"), [("hello?", "I didn't get that."), ("/dance", "Unknown command.")]
)
def test_anything_else_gets_help(text: str, opening: str) -> None:
    replies, _ = handle(text)
    assert replies == [(USER, f"{opening}\n{HELP}")]
