"""Streaming reader for legacy JSON files: memory stays flat whatever the file size.

A file is a JSON array of records or an object keyed by id. ``RecordStream`` yields
``SourceRecord``s in file order. If the file is truncated or malformed, the records
before the damage are yielded, iteration stops, and ``stream.error`` says what is
wrong and where; nothing is raised.

Files are streamed with ijson. A small file (up to ``WHOLE_FILE_LIMIT``; a conversation
file usually is) is parsed whole by the standard library's C decoder instead, which is
twice as fast, when nothing in it could make the two parsers disagree (see
``_parse_whole``); otherwise, and whenever that parse fails, it is streamed like any other.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice, repeat
from pathlib import Path
from typing import IO, Any, NamedTuple

import ijson

#: ijson reads this many bytes at a time.
READ_BUFFER = 256 * 1024
#: Files up to this size are parsed whole (memory: a few times this, once per reader).
WHOLE_FILE_LIMIT = 1 << 20


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
        record = tuple.__new__  # SourceRecord(...) without its Python-level __new__
        with self.path.open("rb") as fh:
            pairs = self._pairs(fh)
            if pairs is None:
                return
            try:
                for _ in islice(pairs, self.skip):
                    self.position += 1
                position = self.position
                for key, value in pairs:
                    position += 1
                    self.position = position  # before yield: exact if the reader stops
                    yield record(SourceRecord, (position - 1, key, value))
            except ijson.JSONError as exc:
                self._fail(fh, _describe(exc))
                return
            except UnicodeDecodeError as exc:
                self._fail(fh, f"invalid UTF-8 ({exc.reason})")
                return
        self.complete = True

    def _pairs(self, fh: IO[bytes]) -> Iterator[tuple[str | None, Any]] | None:
        """(object key or None, value) of each record; None (and ``error``) if the file
        is neither an array nor an object."""
        whole = _read_small(fh)
        parsed = _parse_whole(whole) if whole is not None else None
        if parsed is not None:
            self.layout, items = parsed
            return zip(repeat(None), items) if self.layout == "array" else iter(items)
        self.layout = _layout(fh)
        if self.layout == "array":
            values = ijson.items(fh, "item", use_float=True, buf_size=READ_BUFFER)
            return zip(repeat(None), values)
        if self.layout == "object":
            return ijson.kvitems(fh, "", use_float=True, buf_size=READ_BUFFER)
        self._fail(fh, _layout_problem(self.layout))
        return None

    def _fail(self, fh: IO[bytes], message: str) -> None:
        try:
            offset = fh.tell()
        except (OSError, ValueError):
            offset = -1
        self.error = SourceError(self.path, self.position, offset, message)


def _read_small(fh: IO[bytes]) -> bytes | None:
    """The whole file if it is small enough to parse whole (the position is kept)."""
    size = os.fstat(fh.fileno()).st_size
    if size > WHOLE_FILE_LIMIT:
        return None
    data = fh.read(size + 1)  # + 1: notice a file that grew since fstat
    fh.seek(0)
    return data if len(data) == size else None


#: What the two parsers read differently, found before parsing (a match anywhere, even
#: inside a string, sends the file to ijson): escaped UTF-16 surrogates (ijson turns a
#: lone one into "?") and runs of 19 digits (ijson refuses integers past 64 bits).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_DIGITS_ONLY = bytes(48 if c in b"0123456789" else 32 for c in range(256))  # digits -> 0
_LONG_NUMBER = b"0" * 19


def _float(literal: str) -> float:
    value = float(literal)
    if value in (math.inf, -math.inf):
        raise ValueError(f"{literal} overflows")  # ijson reports the overflow
    return value


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # NaN, Infinity: ijson rejects them


def _parse_whole(data: bytes) -> tuple[str, list[Any]] | None:
    """("array", values) or ("object", (key, value) pairs in file order, repeated keys
    included) parsed with the json module, or None if ijson must read ``data``: it is
    not a complete array or object, not valid UTF-8 or JSON, or has something the parsers
    read differently. Given the same bytes, both parsers give the same records (test_reader.py)."""
    if _SURROGATE_ESCAPE.search(data) is not None or _LONG_NUMBER in data.translate(_DIGITS_ONLY):
        return None
    start = data.lstrip(b" \t\r\n")[:1]
    last: list[Any] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        last[:] = pairs  # the outermost object completes last
        return dict(pairs)

    try:
        text = data.decode("utf-8")
        if start == b"[":
            values = json.loads(text, parse_float=_float, parse_constant=_refuse)
            return ("array", values) if type(values) is list else None
        if start == b"{":
            json.loads(
                text, parse_float=_float, parse_constant=_refuse, object_pairs_hook=pairs_hook
            )
            return ("object", last)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, _refuse
        return None
    return None


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
