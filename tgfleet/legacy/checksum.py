"""Order-independent checksums that PostgreSQL and Python compute identically.

Each normalized row has a canonical text: its fields joined by U+001F, NULL as ``\\N``,
booleans as ``t``/``f``, timestamps as integer microseconds since the Unix epoch. A row's
hash is the first 8 bytes of MD5(canonical) as a signed 64-bit integer; a component's
checksum is (row count, sum of hashes mod 2**64), so order does not matter.
``targets.py`` holds the SQL side of the same formula.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MOD = 2**64
SEP = "\x1f"


def epoch_us(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def canonical(values: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for value in values:
        if value is None:
            parts.append("\\N")
        elif value is True:
            parts.append("t")
        elif value is False:
            parts.append("f")
        elif isinstance(value, datetime):
            parts.append(str(epoch_us(value)))
        else:
            parts.append(str(value))
    return SEP.join(parts)


def row_hash(values: tuple[Any, ...]) -> int:
    digest = hashlib.md5(canonical(values).encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class Checksum:
    """A running (count, sum mod 2**64) over row hashes."""

    count: int = 0
    total: int = 0

    def add(self, value: int) -> None:
        self.count += 1
        self.total = (self.total + value) % MOD

    def as_text(self) -> str:
        return f"{self.count}:{self.total:016x}"
