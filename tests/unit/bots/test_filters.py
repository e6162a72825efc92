"""Filters: each one, and how they compose with &, | and ~ (values passed on only on a match)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.bots.updates import (
    ADMIN,
    GROUP,
    USER,
    callback,
    context,
    document_media,
    message,
    photo_media,
)
from tgfleet.bots import (
    CallbackData,
    CallbackPrefix,
    ChatType,
    Command,
    ContentType,
    Context,
    IsAdmin,
    StateIs,
    Text,
)
from tgfleet.bots.filters import Filter
from tgfleet.inbox import InboundMessage


def check(flt: Any, inbound: InboundMessage, **ctx_options: Any) -> Any:
    ctx = context(inbound, **ctx_options)
    return flt(ctx.update, ctx)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/start", True),
        ("/HELP me", True),
        ("/start@MyBot", True),
        ("/start@OtherBot", False),
        ("/stop", False),
        ("start", False),
    ],
)
def test_command_with_the_bots_username(text: str, expected: bool) -> None:
    # Given a bot whose username is MyBot, When Command("start", "help") checks ``text``
    assert (
        check(Command("start", "/help"), message(text), settings={"username": "mybot"}) is expected
    )


def test_command_without_a_known_username_takes_any_mention_and_no_names_any_command() -> None:
    assert check(Command("start"), message("/start@OtherBot")) is True
    assert check(Command(), message("/whatever")) is True
    assert check(Command(), message("plain")) is False
    assert check(Command("start"), callback(b"/start")) is False


@pytest.mark.parametrize(
    ("flt", "text", "expected"),
    [
        (Text("Yes"), "Yes", True),
        (Text("Yes"), "yes", False),
        (Text(["yes", "no"], ignore_case=True), "NO", True),
        (Text(startswith="http"), "https://x", True),
        (Text(startswith="http"), "see https://x", False),
        (Text(endswith="!", contains="hi"), "oh hi!", True),
        (Text(endswith="!", contains="hi"), "oh hi", False),
        (Text(contains="HI", ignore_case=True), "oh hi", True),
    ],
)
def test_text_criteria(flt: Text, text: str, expected: bool) -> None:
    assert check(flt, message(text)) is expected


def test_a_regex_passes_its_match_on() -> None:
    result = check(Text(regex=r"age (\d+)", ignore_case=True), message("my AGE 30"))
    assert isinstance(result, dict) and isinstance(result["match"], re.Match)
    assert result["match"].group(1) == "30"
    assert check(Text(regex=r"age (\d+)"), message("age?")) is False


def test_text_needs_a_criterion_and_ignores_button_presses() -> None:
    with pytest.raises(ValueError, match=r"Text\(\) needs one of equal="):
        Text()
    assert check(Text(contains="a"), callback(b"a")) is False


def test_content_and_chat_types() -> None:
    assert check(ContentType("photo", "document"), message("", media=photo_media())) is True
    assert check(ContentType("photo"), message("", media=document_media())) is False
    assert check(ContentType("text"), message("hi")) is True
    assert check(ChatType("group"), message("hi", chat_id=-GROUP)) is True
    assert check(ChatType("private"), message("hi", chat_id=-GROUP)) is False
    with pytest.raises(ValueError, match=r"\('phot',\): choose from \['text', 'photo'"):
        ContentType("phot")
    with pytest.raises(ValueError, match=r"name at least one of \['private', 'group', 'channel'\]"):
        ChatType()


def test_is_admin_reads_the_bots_admins() -> None:
    assert check(IsAdmin(), message("hi", chat_id=ADMIN, sender=ADMIN)) is True
    assert check(IsAdmin(), message("hi")) is False


@pytest.mark.parametrize(
    ("states", "state", "expected"),
    [
        (("age",), "age", True),
        (("age",), "name", False),
        ((None,), None, True),
        ((None,), "age", False),
        (("*",), "x", True),
        (("*",), None, False),
    ],
)
def test_state_is(states: tuple[str | None, ...], state: str | None, expected: bool) -> None:
    assert check(StateIs(*states), message("hi"), state=state) is expected


def test_state_is_needs_a_state() -> None:
    with pytest.raises(ValueError, match=r"StateIs\(\) needs a state"):
        StateIs()


def test_callback_prefix() -> None:
    assert check(CallbackPrefix("vote:"), callback(b"vote:1")) is True
    assert check(CallbackPrefix(b"x", "poll:"), callback(b"poll:1")) is True
    assert check(CallbackPrefix("vote:"), callback(b"voter")) is False
    assert check(CallbackPrefix("vote:"), message("vote:1")) is False


class Vote(CallbackData, prefix="vote"):
    action: str
    profile_id: int


def test_the_callback_data_filter_unpacks_and_checks_fields() -> None:
    # Given a press of "like 42"
    press = callback(b"vote:like:42")
    # Then filters on its fields pass it on unpacked, others do not match
    assert check(Vote.filter(action="like"), press) == {"callback_data": Vote("like", 42)}
    assert check(Vote.filter(action=["skip", "like"], profile_id=42), press) == {
        "callback_data": Vote("like", 42)
    }
    assert check(Vote.filter(action="skip"), press) is False
    # And other prefixes, broken data or other updates do not match (no error)
    assert check(Vote.filter(), callback(b"poll:like:42")) is False
    assert check(Vote.filter(), callback(b"vote:like:x")) is False
    assert check(Vote.filter(), callback(b"voter:like:1")) is False
    assert check(Vote.filter(), message("vote:like:42")) is False


class Passes(Filter):
    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    def check(self, event: Any, ctx: Context) -> Any:
        self.calls += 1
        return self.value


def test_and_merges_values_and_fails_on_any() -> None:
    both = Passes({"a": 1}) & Passes({"b": 2}) & Passes(True)
    assert check(both, message("x")) == {"a": 1, "b": 2}
    first = Passes(False)
    second = Passes({"b": 2})
    assert check(first & second, message("x")) is False
    assert second.calls == 0  # short-circuits


def test_or_takes_the_first_that_passes_and_its_values_only() -> None:
    assert check(Passes(False) | Passes({"b": 2}) | Passes({"c": 3}), message("x")) == {"b": 2}
    assert check(Passes(False) | Passes(False), message("x")) is False
    assert check(Passes(False) | Passes(True), message("x")) is True


def test_not_inverts_and_plain_functions_compose() -> None:
    assert check(~Command(), message("hello")) is True
    assert check(~Command(), message("/start")) is False

    def is_long(event: Any, ctx: Context) -> bool:
        return len(ctx.text) > 3

    assert check(is_long & Text(startswith="h"), message("hello")) is True
    assert check(Text(startswith="h") & is_long, message("hi")) is False
    assert check(is_long | Command(), message("/a")) is True


def test_a_filter_returning_something_odd_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"returned 'yes'; want True, False or a dict"):
        check(Passes("yes") & Passes(True), message("x"))


def test_a_user_in_a_group_is_not_the_chat() -> None:
    # IsAdmin checks the sender, not the chat
    assert check(IsAdmin(), message("hi", chat_id=-GROUP, sender=ADMIN)) is True
    assert check(IsAdmin(), message("hi", chat_id=-GROUP, sender=USER)) is False
