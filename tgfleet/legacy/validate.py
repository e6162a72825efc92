"""Validators: turn one raw legacy record into a normalized row, or say why it can't be.

Each ``validate_*`` function returns a tuple in the column order of ``COLUMNS[component]``
or raises ``InvalidRecord`` whose reason names the field, what was found and what was
expected. The rules are the ones docs/legacy-json.md lists.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tgfleet.legacy.format import (
    LOOKING_FOR,
    MAX_AGE,
    MAX_BIO,
    MAX_CITY,
    MAX_LANGUAGE,
    MAX_NAME,
    MAX_PHOTO,
    MAX_TEXT,
    MAX_USERNAME,
    MIN_AGE,
    Component,
)
from tgfleet.platform.errors import TgfleetError

#: Normalized row layout per component (the order of the tuples validators return).
COLUMNS: dict[Component, tuple[str, ...]] = {
    Component.USERS: ("id", "username", "first_name", "language", "created"),
    Component.PROFILES: (
        "user_id",
        "name",
        "age",
        "city",
        "bio",
        "looking_for",
        "photo",
        "visible",
    ),
    Component.CONVERSATIONS: ("user_id", "id", "from", "text", "date"),
}

#: Telegram did not exist before this; earlier dates are corrupt.
EARLIEST = datetime(2013, 1, 1, tzinfo=UTC)
MAX_BIGINT = 2**63 - 1
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class InvalidRecord(TgfleetError):
    """The record breaks a rule of the legacy format; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _record(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRecord(f"record is a {type(raw).__name__}, expected a JSON object")
    return raw


def _int(raw: dict[str, Any], field: str, key: str | None = None) -> int:
    if field not in raw:
        if key is not None and key.isdigit():
            return _positive(int(key), field)
        raise InvalidRecord(f"missing required field {field!r}")
    value = raw[field]
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidRecord(f"{field} is {_short(value)}, expected an integer")
    if key is not None and key != str(value):
        raise InvalidRecord(f"{field} {value} differs from its object key {key!r}")
    return _positive(value, field)


def _positive(value: int, field: str) -> int:
    if not 0 < value <= MAX_BIGINT:
        raise InvalidRecord(f"{field} is {value}, expected a positive 64-bit integer")
    return value


def _text(raw: dict[str, Any], field: str, limit: int, *, required: bool = False) -> str | None:
    value = raw.get(field)
    if value is None:
        if required:
            raise InvalidRecord(f"missing required field {field!r}")
        return None
    if not isinstance(value, str):
        raise InvalidRecord(f"{field} is {_short(value)}, expected a string")
    if required and not value.strip():
        raise InvalidRecord(f"{field} is empty, expected a non-empty string")
    if len(value) > limit:
        raise InvalidRecord(f"{field} has {len(value)} characters, the limit is {limit}")
    bad = _BAD_CHARS.search(value)
    if bad is not None:
        what = "a NUL character" if bad.group() == "\x00" else "an unpaired UTF-16 surrogate"
        raise InvalidRecord(
            f"{field} contains {what} at character {bad.start()}, which PostgreSQL cannot store"
        )
    return value


class _Tomorrow:
    """The latest date allowed, recomputed once a minute (it is asked for every record)."""

    def __init__(self) -> None:
        self.checked = float("-inf")
        self.value = EARLIEST

    def __call__(self) -> datetime:
        stamp = time.monotonic()
        if stamp - self.checked > 60:
            self.checked, self.value = stamp, datetime.now(UTC) + timedelta(days=1)
        return self.value


latest_allowed = _Tomorrow()


def parse_date(value: Any, field: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive means UTC) or Unix seconds, between 2013 and tomorrow."""
    if isinstance(value, bool) or value is None:
        raise InvalidRecord(f"{field} is {_short(value)}, expected an ISO 8601 date")
    if isinstance(value, int | float):
        try:
            when = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidRecord(f"{field} is {value}, not a valid Unix timestamp") from None
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRecord(
                f"{field} is {_short(value)}, expected an ISO 8601 date like "
                "2021-05-04T13:37:00+00:00"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    else:
        raise InvalidRecord(f"{field} is {_short(value)}, expected an ISO 8601 date")
    latest = now + timedelta(days=1) if now is not None else latest_allowed()
    if not EARLIEST <= when <= latest:
        raise InvalidRecord(f"{field} {when.isoformat()} is outside 2013-01-01 .. tomorrow")
    return when.astimezone(UTC)


def validate_user(raw: Any, key: str | None = None) -> tuple[Any, ...]:
    rec = _record(raw)
    user_id = _int(rec, "id", key)
    username = _text(rec, "username", MAX_USERNAME)
    if username is not None:
        username = username.removeprefix("@")
    first_name = _text(rec, "first_name", MAX_NAME)
    language = _text(rec, "language", MAX_LANGUAGE)
    if "created" not in rec:
        raise InvalidRecord("missing required field 'created'")
    created = parse_date(rec["created"], "created")
    return (user_id, username, first_name, language, created)


def validate_profile(raw: Any, key: str | None = None) -> tuple[Any, ...]:
    rec = _record(raw)
    user_id = _int(rec, "user_id", key)
    name = _text(rec, "name", MAX_NAME, required=True)
    age = rec.get("age")
    if age is not None:
        if isinstance(age, str) and age.strip().isdigit():
            age = int(age.strip())
        if isinstance(age, bool) or not isinstance(age, int):
            raise InvalidRecord(f"age is {_short(age)}, expected a whole number of years")
        if not MIN_AGE <= age <= MAX_AGE:
            raise InvalidRecord(f"age is {age}, expected {MIN_AGE}..{MAX_AGE}")
    city = _text(rec, "city", MAX_CITY)
    bio = _text(rec, "bio", MAX_BIO)
    looking_for = rec.get("looking_for")
    if looking_for is not None and looking_for not in LOOKING_FOR:
        raise InvalidRecord(
            f"looking_for is {_short(looking_for)}, expected one of {', '.join(LOOKING_FOR)}"
        )
    photo = _text(rec, "photo", MAX_PHOTO)
    visible = rec.get("visible", True)
    if visible in (0, 1) and not isinstance(visible, float):
        visible = bool(visible)
    if not isinstance(visible, bool):
        raise InvalidRecord(f"visible is {_short(visible)}, expected true or false")
    return (user_id, name, age, city, bio, looking_for, photo, visible)


def validate_message(
    raw: Any, key: str | None, *, user_id: int, bot_id: int, latest: datetime | None = None
) -> tuple[Any, ...]:
    """A message row; the common, clean case is checked inline (this runs millions of
    times), anything unusual takes the full path that explains what is wrong."""
    if type(raw) is dict:
        mid, sender, text, date = raw.get("id"), raw.get("from"), raw.get("text"), raw.get("date")
        if (
            type(mid) is int
            and 0 < mid <= MAX_BIGINT
            and (key is None or key == str(mid))
            and type(sender) is int
            and sender in (user_id, bot_id)
            and (
                text is None
                or (type(text) is str and len(text) <= MAX_TEXT and _BAD_CHARS.search(text) is None)
            )
            and type(date) is str
        ):
            try:
                when = datetime.fromisoformat(date)
            except ValueError:
                return _validate_message(raw, key, user_id=user_id, bot_id=bot_id)
            if when.tzinfo is not UTC:
                when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
            if EARLIEST <= when <= (latest or latest_allowed()):
                return (user_id, mid, sender, text, when)
    return _validate_message(raw, key, user_id=user_id, bot_id=bot_id)


def _validate_message(raw: Any, key: str | None, *, user_id: int, bot_id: int) -> tuple[Any, ...]:
    rec = _record(raw)
    message_id = _int(rec, "id", key)
    if "from" not in rec:
        raise InvalidRecord("missing required field 'from'")
    sender = rec["from"]
    if isinstance(sender, bool) or not isinstance(sender, int) or sender not in (user_id, bot_id):
        raise InvalidRecord(
            f"from is {_short(sender)}, expected the user's id {user_id} or the bot's id {bot_id}"
        )
    text = _text(rec, "text", MAX_TEXT)
    if "date" not in rec:
        raise InvalidRecord("missing required field 'date'")
    date = parse_date(rec["date"], "date")
    return (user_id, message_id, sender, text, date)


Validator = Callable[[Any, "str | None"], tuple[Any, ...]]


def validator_for(component: Component, *, bot_id: int, user_id: int | None) -> Validator:
    """The validator for one file of ``component``."""
    if component is Component.USERS:
        return validate_user
    if component is Component.PROFILES:
        return validate_profile
    if user_id is None:
        raise ValueError("conversation files need the user id from their file name")

    latest = latest_allowed()  # once per file, not per message

    def _message(raw: Any, key: str | None) -> tuple[Any, ...]:
        return validate_message(raw, key, user_id=user_id, bot_id=bot_id, latest=latest)

    return _message


def record_key(component: Component, row: tuple[Any, ...]) -> tuple[int, ...]:
    """The identity of a normalized row within its bot (duplicates share it)."""
    if component is Component.CONVERSATIONS:
        return (row[0], row[1])
    return (row[0],)
