"""Validators: a raw legacy record becomes a normalized row, or a reason that names the
field, what was found and what was expected (docs/legacy-json.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tgfleet.legacy.format import Component
from tgfleet.legacy.validate import (
    COLUMNS,
    InvalidRecord,
    _validate_message,
    parse_date,
    record_key,
    validate_message,
    validate_profile,
    validate_user,
    validator_for,
)

NOW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"user_id": 5, "name": "A", "age": "twenty"}, "age is 'twenty'"),
        ({"user_id": 5, "name": "A", "age": 7}, "age is 7, expected 13..120"),
        ({"user_id": 5, "age": 30}, "missing required field 'name'"),
        ({"user_id": 5, "name": "A", "visible": "yes"}, "visible is 'yes'"),
        ({"user_id": 5, "name": "A", "bio": "a\x00b"}, "NUL character at character 1"),
        ({"user_id": 5, "name": "A", "bio": "x" * 5000}, "bio has 5000 characters"),
        ({"user_id": -3, "name": "A"}, "expected a positive 64-bit integer"),
        ("not an object", "record is a str, expected a JSON object"),
    ],
)
def test_invalid_profiles_say_what_is_wrong(record: object, reason: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        validate_profile(record)
    assert reason in caught.value.reason


def test_dates_naive_means_utc_bad_ones_rejected() -> None:
    row = validate_user({"id": 9, "created": "2021-05-04T13:37:00"})
    assert row[4] == datetime(2021, 5, 4, 13, 37, tzinfo=UTC)
    epoch = validate_user({"id": 9, "created": 1620135420})
    assert epoch[4] == datetime(2021, 5, 4, 13, 37, tzinfo=UTC)
    for bad in ("31/02/2021", "1999-01-01T00:00:00Z", None, True):
        with pytest.raises(InvalidRecord, match="created"):
            validate_user({"id": 9, "created": bad})


def test_object_key_must_agree_with_id() -> None:
    assert validate_user({"created": "2021-01-01T00:00:00Z"}, "77")[0] == 77
    with pytest.raises(InvalidRecord, match="differs from its object key"):
        validate_user({"id": 78, "created": "2021-01-01T00:00:00Z"}, "77")


def test_message_sender_must_be_the_user_or_the_bot() -> None:
    ok = validate_message(
        {"id": 1, "from": 10, "text": "hi", "date": "2022-01-01T00:00:00Z"},
        None,
        user_id=10,
        bot_id=99,
    )
    assert ok[:3] == (10, 1, 10)
    with pytest.raises(InvalidRecord, match="expected the user's id 10 or the bot's id 99"):
        validate_message(
            {"id": 1, "from": "bot", "date": "2022-01-01T00:00:00Z"}, None, user_id=10, bot_id=99
        )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-05-04T13:37:00+02:00", datetime(2021, 5, 4, 11, 37, tzinfo=UTC)),
        (" 2021-05-04 13:37:00 ", datetime(2021, 5, 4, 13, 37, tzinfo=UTC)),
        (1620135420.5, datetime(2021, 5, 4, 13, 37, 0, 500000, tzinfo=UTC)),
        ("2024-06-02T00:00:00Z", datetime(2024, 6, 2, tzinfo=UTC)),  # tomorrow: allowed
    ],
)
def test_dates_come_out_in_utc(value: Any, expected: datetime) -> None:
    assert parse_date(value, "date", now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2012-12-31T23:59:59Z", "outside 2013-01-01 .. tomorrow"),
        ("2024-06-03T00:00:00Z", "outside 2013-01-01 .. tomorrow"),
        (10**20, "not a valid Unix timestamp"),
        ("yesterday", "expected an ISO 8601 date like 2021-05-04T13:37:00+00:00"),
        ([2021, 5, 4], "expected an ISO 8601 date"),
        (False, "expected an ISO 8601 date"),
    ],
)
def test_bad_dates_say_why(value: Any, reason: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_date(value, "date", now=NOW)
    assert caught.value.reason.startswith("date ") and reason in caught.value.reason


def test_a_user_row_follows_its_columns() -> None:
    # Given a user with an @-prefixed username and an id given as a string
    row = validate_user(
        {
            "id": "77",
            "username": "@ann",
            "first_name": "Ann",
            "language": "en",
            "created": "2021-01-01T00:00:00Z",
        }
    )
    # Then the row is in COLUMNS order, the id an integer, the @ dropped
    assert dict(zip(COLUMNS[Component.USERS], row, strict=True)) == {
        "id": 77,
        "username": "ann",
        "first_name": "Ann",
        "language": "en",
        "created": datetime(2021, 1, 1, tzinfo=UTC),
    }


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"id": 1.5, "created": "2021-01-01"}, "id is 1.5, expected an integer"),
        ({"id": True, "created": "2021-01-01"}, "id is True, expected an integer"),
        ({"id": 2**63, "created": "2021-01-01"}, "expected a positive 64-bit integer"),
        ({"id": 1}, "missing required field 'created'"),
        ({"id": 1, "username": 5, "created": "2021-01-01"}, "username is 5, expected a string"),
        (
            {"id": 1, "first_name": "a\ud800b", "created": "2021-01-01"},
            "an unpaired UTF-16 surrogate at character 1",
        ),
    ],
)
def test_invalid_users_say_what_is_wrong(record: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        validate_user(record)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"age": "30"}, "age", 30),
        ({"visible": 0}, "visible", False),
        ({"visible": 1}, "visible", True),
        ({}, "visible", True),
        ({"looking_for": "any"}, "looking_for", "any"),
    ],
)
def test_profiles_accept_what_old_bots_wrote(
    changes: dict[str, Any], field: str, value: Any
) -> None:
    row = validate_profile({"user_id": 5, "name": "A"} | changes)
    assert row[COLUMNS[Component.PROFILES].index(field)] == value


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"looking_for": "robots"}, "looking_for is 'robots', expected one of male, female, any"),
        ({"visible": 0.0}, "visible is 0.0, expected true or false"),
        ({"name": "  "}, "name is empty, expected a non-empty string"),
    ],
)
def test_invalid_profile_choices_say_what_is_allowed(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        validate_profile({"user_id": 5, "name": "A"} | changes)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "record",
    [
        {"id": 1, "from": 10, "text": "hi", "date": "2022-01-01T00:00:00"},
        {"id": 1, "from": 99, "date": "2022-01-01T00:00:00+03:00"},
        {"id": "1", "from": 10, "text": "x", "date": "2022-01-01T00:00:00Z"},
        {"id": 1, "from": 10, "text": "x", "date": 1640995200},
        {"id": 1, "from": 10, "text": "x", "date": "2022-01-01 garbage"},
        {"id": 1, "from": 10, "text": "a\x00b", "date": "2022-01-01T00:00:00Z"},
        {"id": 1, "from": 11, "date": "2022-01-01T00:00:00Z"},
        {"id": 1, "from": 10, "date": "2012-01-01T00:00:00Z"},
    ],
)
def test_the_fast_path_agrees_with_the_full_rules(record: dict[str, Any]) -> None:
    # Given a message the inline fast path accepts or hands on
    def outcome(validate: Any) -> Any:
        try:
            return validate(record)
        except InvalidRecord as exc:
            return exc.reason

    fast = validator_for(Component.CONVERSATIONS, bot_id=99, user_id=10)
    # When validated inline and by the full path, Then both give the same row or reason
    full = outcome(lambda r: _validate_message(r, None, user_id=10, bot_id=99))
    assert outcome(lambda r: fast(r, None)) == full


def test_conversation_files_need_their_user() -> None:
    with pytest.raises(ValueError, match="need the user id"):
        validator_for(Component.CONVERSATIONS, bot_id=1, user_id=None)
    assert validator_for(Component.USERS, bot_id=1, user_id=None) is validate_user


def test_a_message_is_identified_by_user_and_id() -> None:
    row = validate_message(
        {"id": 4, "from": 10, "date": "2022-01-01T00:00:00Z"}, None, user_id=10, bot_id=99
    )
    assert record_key(Component.CONVERSATIONS, row) == (10, 4)
    assert record_key(Component.USERS, (77, None, None, None, None)) == (77,)
