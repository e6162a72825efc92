"""Streaming reader, validators and generator: no database needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tgfleet.legacy.format import Component, source_files
from tgfleet.legacy.generate import generate_store
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.validate import (
    InvalidRecord,
    record_key,
    validate_message,
    validate_profile,
    validate_user,
    validator_for,
)


def _write(path: Path, data: str) -> Path:
    path.write_text(data, encoding="utf-8")
    return path


def test_array_and_object_layouts_yield_the_same_records(tmp_path: Path) -> None:
    # Given the same two users as an array and as an object keyed by id
    users = [{"id": 1, "first_name": "A"}, {"id": 2, "first_name": "B"}]
    array = _write(tmp_path / "a.json", json.dumps(users))
    keyed = _write(tmp_path / "o.json", json.dumps({str(u["id"]): u for u in users}))
    # When both are read
    from_array = list(RecordStream(array))
    from_object = list(RecordStream(keyed))
    # Then values and positions agree, and the object's keys come along
    assert [r.value for r in from_array] == [r.value for r in from_object] == users
    assert [r.position for r in from_object] == [0, 1]
    assert [r.key for r in from_object] == ["1", "2"] and from_array[0].key is None


def test_truncated_file_yields_good_prefix_and_reports_error(tmp_path: Path) -> None:
    # Given a file cut in the middle of its third record
    text = json.dumps([{"id": i, "text": "x" * 20} for i in range(5)])
    path = _write(tmp_path / "t.json", text[: text.index('{"id": 2') + 10])
    # When it is read
    stream = RecordStream(path)
    got = [r.value["id"] for r in stream]
    # Then the two complete records come out and the error says what and where
    assert got == [0, 1]
    assert stream.error is not None and not stream.complete
    assert stream.error.position == 2 and "truncated" in str(stream.error)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("", "empty"), ('"just a string"', "does not start with [ or {"), ("[1, 2,, 3]", "invalid")],
)
def test_unreadable_files_are_reported_not_raised(
    tmp_path: Path, content: str, expected: str
) -> None:
    stream = RecordStream(_write(tmp_path / "bad.json", content))
    records = list(stream)
    assert stream.error is not None and expected in stream.error.message
    assert len(records) <= 2


def test_skip_resumes_at_a_position(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.json", json.dumps([{"id": i} for i in range(10)]))
    stream = RecordStream(path, skip=7)
    assert [r.position for r in stream] == [7, 8, 9] and stream.position == 10


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


def test_generator_tally_matches_what_the_validators_find(tmp_path: Path) -> None:
    # Given a messy generated store
    report = generate_store(tmp_path, bots=2, users=120, messages=6, messy=True, seed=4)
    assert report.truncated_files, "the messy store should include truncated files"
    for component in Component:
        records = invalid = 0
        # When every file is read and validated (first valid record per id wins)
        for source in source_files(tmp_path, component):
            validate = validator_for(component, bot_id=source.bot_id, user_id=source.user_id)
            seen: set[tuple[int, ...]] = set()
            for record in RecordStream(source.path):
                records += 1
                try:
                    key = record_key(component, validate(record.value, record.key))
                except InvalidRecord:
                    invalid += 1
                    continue
                invalid += key in seen
                seen.add(key)
        # Then the counts are the generator's, and the mess is really there
        tally = report.tally[component]
        assert (records, invalid) == (tally.records, tally.invalid), component
        assert invalid > 0


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = generate_store(tmp_path / "a", bots=1, users=30, messy=True, seed=9)
    b = generate_store(tmp_path / "b", bots=1, users=30, messy=True, seed=9)
    assert a.tally == b.tally
    assert (tmp_path / "a" / str(a.bots[0]) / "users.json").read_bytes() == (
        tmp_path / "b" / str(b.bots[0]) / "users.json"
    ).read_bytes()
