"""Streaming reader, validators and generator: no database needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tgfleet.legacy import reader
from tgfleet.legacy.format import Component, source_files
from tgfleet.legacy.generate import generate_store
from tgfleet.legacy.loading import LoadBuffer
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.targets import copy_line
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


def _streamed(path: Path) -> tuple[list[tuple[int, str | None, object]], str | None]:
    """What ijson alone reads from ``path`` (whole-file parsing switched off)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reader, "WHOLE_FILE_LIMIT", -1)
        stream = RecordStream(path)
        records = [tuple(r) for r in stream]
    return records, str(stream.error) if stream.error else None


def _parsed(path: Path) -> tuple[list[tuple[int, str | None, object]], str | None]:
    stream = RecordStream(path)
    records = [tuple(r) for r in stream]
    return records, str(stream.error) if stream.error else None


def test_small_files_parsed_whole_give_exactly_what_streaming_gives(tmp_path: Path) -> None:
    # Given a messy store (odd Unicode, wrong types, duplicate keys, truncated files)
    generate_store(tmp_path, bots=2, users=60, messages=8, messy=True, seed=11)
    files = [s.path for c in Component for s in source_files(tmp_path, c)]
    assert files and all(f.stat().st_size <= reader.WHOLE_FILE_LIMIT for f in files)
    # When each file is read whole and streamed, Then records, positions, keys and
    # errors are the same
    for path in files:
        assert _parsed(path) == _streamed(path), path


@pytest.mark.parametrize(
    "content",
    [
        '[{"id": 1, "text": "lone \\ud800 surrogate"}, {"id": 2}]',  # ijson makes it "?"
        '[{"id": 1, "text": "pair \\ud83d\\ude00"}]',
        '[{"id": 12345678901234567890}, {"id": 2}]',  # past 64 bits: ijson refuses
        '[{"id": 1, "x": 1e400}, {"id": 2}]',  # overflow: ijson refuses
        '[{"id": 1, "x": NaN}]',  # not JSON: ijson refuses
        '{"1": {"id": 1}, "1": {"id": 1, "text": "again"}, "2": {"id": 2, "a": {"b": 1}}}',
        '[{"id": 1, "a": 1, "a": 2}]',
        '[{"id": 1}] [{"id": 2}]',
        '[{"id": 1}, {"id": 2}',
        "  \n[]",
        "{}",
    ],
)
def test_whole_file_parse_agrees_with_ijson_on_edge_cases(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path / "edge.json", content)
    assert _parsed(path) == _streamed(path)


def test_skip_works_the_same_on_whole_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.json", json.dumps({str(i): {"id": i} for i in range(5)}))
    for skip in (0, 3, 5, 9):
        stream = RecordStream(path, skip=skip)
        assert [r.position for r in stream] == list(range(skip, 5))
        assert stream.position == 5 and stream.complete


def test_inline_message_path_matches_the_validator_and_copy_line(tmp_path: Path) -> None:
    # Given a messy store's conversation files
    generate_store(tmp_path, bots=2, users=80, messages=12, messy=True, seed=12)
    line_of = copy_line(Component.CONVERSATIONS)
    for source in source_files(tmp_path, Component.CONVERSATIONS):
        assert source.user_id is not None
        # When a buffer takes the file (inline path for clean records)
        buffer = LoadBuffer(Component.CONVERSATIONS, source.bot_id)
        buffer.start_file(source, "f")
        buffer.take(iter(RecordStream(source.path)), 10**9, 10**9)
        # Then its lines, keys and quarantine are what validate_message and copy_line
        # give record by record
        validate = validator_for(
            Component.CONVERSATIONS, bot_id=source.bot_id, user_id=source.user_id
        )
        lines, keys, rejected, seen = [], [], [], set()
        for record in RecordStream(source.path):
            try:
                row = validate(record.value, record.key)
            except InvalidRecord:
                rejected.append(record.position)
                continue
            if row[1] in seen:
                rejected.append(record.position)
                continue
            seen.add(row[1])
            lines.append(line_of(row, record.value))
            keys.append((row[0], row[1]))
        assert buffer.lines == lines and buffer.keys == keys
        assert [q["position"] for q in buffer.quarantine] == rejected
