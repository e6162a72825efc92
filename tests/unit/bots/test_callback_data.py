"""Typed callback data: packs to "prefix:value:...", unpacks back, and says what is wrong."""

from __future__ import annotations

from enum import Enum

import pytest

from tgfleet.bots import CallbackData, CallbackDataError


class Action(Enum):
    LIKE = "like"
    SKIP = "skip"


class Vote(CallbackData, prefix="vote"):
    action: str
    profile_id: int


class Rich(CallbackData, prefix="r"):
    action: Action
    page: int = 1
    confirm: bool = False
    note: str | None = None


def test_a_vote_packs_and_unpacks() -> None:
    # Given a vote, When packed, Then it reads "vote:like:42" and unpacks to an equal vote
    vote = Vote(action="like", profile_id=42)
    assert vote.pack() == "vote:like:42"
    assert Vote.unpack("vote:like:42") == vote
    assert Vote.unpack(b"vote:like:42") == vote


@pytest.mark.parametrize(
    "data",
    [
        Rich(Action.LIKE),
        Rich(Action.SKIP, page=-3, confirm=True, note="x y"),
        Rich(Action.LIKE, note=""),
    ],
)
def test_enums_bools_defaults_and_optionals_round_trip(data: Rich) -> None:
    packed = data.pack()
    assert Rich.unpack(packed) == (
        data if data.note != "" else Rich(data.action, data.page, data.confirm)
    )


def test_bools_pack_as_one_and_zero_and_none_as_empty() -> None:
    assert Rich(Action.SKIP, 2, True).pack() == "r:skip:2:1:"


def test_objects_are_frozen() -> None:
    vote = Vote(action="like", profile_id=1)
    with pytest.raises(AttributeError):
        vote.action = "skip"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("poll:like:42", r"Vote: unknown prefix 'poll' in 'poll:like:42', expected 'vote'"),
        ("vote:like", r"Vote: 'vote:like' has 1 fields, expected 2 \(action, profile_id\)"),
        ("vote:like:4:2", r"has 3 fields, expected 2"),
        ("vote:like:x42", r"Vote.profile_id: 'x42' is not an int"),
        (b"vote:\xff:1", r"Vote: callback data b'vote:\\xff:1' is not UTF-8 text"),
    ],
)
def test_bad_data_names_what_is_wrong(data: str | bytes, message: str) -> None:
    with pytest.raises(CallbackDataError, match=message):
        Vote.unpack(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("r:love:1:0:", r"Rich.action: 'love' is not one of \['like', 'skip'\]"),
        ("r:like:1:yes:", r"Rich.confirm: 'yes' is not a bool \(1 or 0\)"),
        ("r:like::0:", r"Rich.page: '' is not an int"),
    ],
)
def test_bad_enum_bool_and_missing_int_are_named(data: str, message: str) -> None:
    with pytest.raises(CallbackDataError, match=message):
        Rich.unpack(data)


def test_the_separator_inside_a_value_is_refused() -> None:
    with pytest.raises(CallbackDataError, match=r"Vote.action = 'a:b' contains the separator ':'"):
        Vote(action="a:b", profile_id=1).pack()


def test_telegrams_64_byte_limit_is_checked_when_packing() -> None:
    # Given a vote that packs to exactly 64 bytes ("vote:" + 57 + ":1"), and one a byte longer
    assert len(Vote(action="x" * 57, profile_id=1).pack()) == 64
    # Then the longer one names the limit and its size
    with pytest.raises(CallbackDataError, match=r"packs to 65 bytes .* limit is 64 bytes"):
        Vote(action="x" * 58, profile_id=1).pack()
    # And the size counts bytes, not characters
    with pytest.raises(CallbackDataError, match=r"packs to 67 bytes"):
        Vote(action="é" * 30, profile_id=1).pack()


def test_a_prefix_with_the_separator_or_an_unsupported_field_type_fails_at_definition() -> None:
    with pytest.raises(TypeError, match=r"prefix 'a:b' must be non-empty, without ':'"):

        class Bad(CallbackData, prefix="a:b"):
            x: int

    with pytest.raises(TypeError, match=r"Floaty.ratio: callback data fields are str, int"):

        class Floaty(CallbackData, prefix="f"):
            ratio: float


def test_none_in_a_field_that_does_not_allow_it_is_refused() -> None:
    with pytest.raises(CallbackDataError, match=r"Vote.action is None but its type"):
        Vote(action=None, profile_id=1).pack()  # type: ignore[arg-type]


def test_a_filter_on_an_unknown_field_is_refused() -> None:
    with pytest.raises(CallbackDataError, match=r"Vote.filter\(\): no field\(s\) \['kind'\]"):
        Vote.filter(kind="x")
