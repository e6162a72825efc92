"""Checksums that PostgreSQL and Python compute alike: canonical text, row hash, and an
order-independent (count, sum) per component."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tgfleet.legacy.checksum import MOD, Checksum, canonical, epoch_us, row_hash


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ((1, None, "ann"), "1\x1f\\N\x1fann"),
        ((True, False), "t\x1ff"),
        ((datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC),), "1000005"),
        ((0, ""), "0\x1f"),
    ],
)
def test_canonical_text_writes_null_booleans_and_times_as_sql_does(
    values: tuple[object, ...], text: str
) -> None:
    assert canonical(values) == text


def test_a_moment_is_the_same_in_any_time_zone() -> None:
    utc = datetime(2021, 5, 4, 13, 37, tzinfo=UTC)
    lisbon = utc.astimezone(timezone(timedelta(hours=1)))
    assert epoch_us(utc) == epoch_us(lisbon) == 1_620_135_420_000_000
    assert epoch_us(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)) == -1_000_000


def test_the_row_hash_is_the_first_8_bytes_of_md5_signed() -> None:
    digest = hashlib.md5(b"1\x1fann", usedforsecurity=False).digest()
    assert row_hash((1, "ann")) == int.from_bytes(digest[:8], "big", signed=True)
    assert row_hash((1, "ann")) != row_hash(("1", "ann ")) != row_hash((2, "ann"))


def test_the_checksum_ignores_order_and_wraps_at_64_bits() -> None:
    # Given the same rows added in two orders
    rows = [(i, f"user{i}", i % 2 == 0) for i in range(500)]
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    first, second = Checksum(), Checksum()
    for row in rows:
        first.add(row_hash(row))
    for row in shuffled:
        second.add(row_hash(row))
    # Then the checksums agree, and the sum stays below 2**64
    assert first == second and first.count == 500
    assert 0 <= first.total < MOD


def test_the_checksum_text_is_count_and_hex_sum() -> None:
    checksum = Checksum()
    checksum.add(-1)
    checksum.add(2)
    assert checksum.as_text() == "2:0000000000000001"
