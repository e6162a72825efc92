"""The streaming reader of legacy JSON files: both layouts, damaged files, resuming, and
whole-file parsing that agrees with streaming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tgfleet.legacy import reader
from tgfleet.legacy.format import Component, source_files
from tgfleet.legacy.generate import generate_store
from tgfleet.legacy.reader import RecordStream


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
