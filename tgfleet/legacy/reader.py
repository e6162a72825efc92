"""Streaming reader for legacy JSON files: memory stays flat whatever the file size.

A file is a JSON array of records or an object keyed by id. ``RecordStream`` yields
``SourceRecord``s in file order. If the file is truncated or malformed, the records
before the damage are yielded, iteration stops, and ``stream.error`` says what is
wrong and where; nothing is raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any, NamedTuple

import ijson

#: ijson reads this many bytes at a time.
READ_BUFFER = 256 * 1024


class SourceRecord(NamedTuple):
    """One record as found in the file: its 0-based position, object key, and value.
    (A named tuple: millions are made, and a tuple is the cheapest object to build.)"""

    position: int
    key: str | None
    value: Any


@dataclass(frozen=True, slots=True)
class SourceError:
    """Why a file could not be read to its end."""

    path: Path
    position: int
    byte_offset: int
    message: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.message} after record {self.position} "
            f"(byte {self.byte_offset}); records before it were read"
        )


class RecordStream:
    """Iterate the records of one legacy file, skipping the first ``skip`` records."""

    def __init__(self, path: Path, *, skip: int = 0) -> None:
        self.path = path
        self.skip = skip
        self.error: SourceError | None = None
        #: Records seen so far, including skipped ones (the next record's position).
        self.position = 0
        #: "array" or "object" once the first byte has been read.
        self.layout: str | None = None
        self.complete = False

    def __iter__(self) -> Iterator[SourceRecord]:
        with self.path.open("rb") as fh:
            layout = _layout(fh)
            self.layout = layout
            if layout not in ("array", "object"):
                self._fail(fh, _layout_problem(layout))
                return
            try:
                if layout == "array":
                    values = ijson.items(fh, "item", use_float=True, buf_size=READ_BUFFER)
                    for _ in islice(values, self.skip):
                        self.position += 1
                    position = self.position
                    for value in values:
                        position += 1
                        self.position = position  # before yield: exact if the reader stops
                        yield SourceRecord(position - 1, None, value)
                else:
                    pairs = ijson.kvitems(fh, "", use_float=True, buf_size=READ_BUFFER)
                    for _ in islice(pairs, self.skip):
                        self.position += 1
                    position = self.position
                    for key, value in pairs:
                        position += 1
                        self.position = position
                        yield SourceRecord(position - 1, key, value)
            except ijson.JSONError as exc:
                self._fail(fh, _describe(exc))
                return
            except UnicodeDecodeError as exc:
                self._fail(fh, f"invalid UTF-8 ({exc.reason})")
                return
        self.complete = True

    def _fail(self, fh: IO[bytes], message: str) -> None:
        try:
            offset = fh.tell()
        except (OSError, ValueError):
            offset = -1
        self.error = SourceError(self.path, self.position, offset, message)


def _layout(fh: IO[bytes]) -> str:
    """Peek at the first non-blank byte: "array", "object", "empty" or "other"."""
    while True:
        chunk = fh.read(4096)
        if not chunk:
            fh.seek(0)
            return "empty"
        stripped = chunk.lstrip(b" \t\r\n")
        if stripped:
            fh.seek(0)
            first = stripped[:1]
            return {b"[": "array", b"{": "object"}.get(first, "other")


def _layout_problem(layout: str) -> str:
    if layout == "empty":
        return "the file is empty; expected a JSON array or an object keyed by id"
    return "the file does not start with [ or {; expected a JSON array or an object keyed by id"


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.removeprefix("b'").removeprefix('b"')
    if "incomplete" in text.lower() or "premature" in text.lower():
        return f"the file is truncated ({text})"
    return f"invalid JSON ({text})"


def count_records(path: Path) -> tuple[int, SourceError | None]:
    """Number of readable records in a file, and the read error if any."""
    stream = RecordStream(path)
    count = sum(1 for _ in stream)
    return count, stream.error
