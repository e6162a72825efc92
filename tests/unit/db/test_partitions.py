"""Month arithmetic and names of the monthly partitions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tgfleet.db.partitions import add_months, month_start, partition_name


@pytest.mark.parametrize(
    ("month", "count", "expected"),
    [
        (date(2024, 1, 1), 1, date(2024, 2, 1)),
        (date(2024, 11, 1), 2, date(2025, 1, 1)),
        (date(2024, 1, 1), -1, date(2023, 12, 1)),
        (date(2024, 3, 1), -26, date(2022, 1, 1)),
        (date(2024, 12, 1), 0, date(2024, 12, 1)),
        (date(2024, 1, 1), 36, date(2027, 1, 1)),
    ],
)
def test_adding_months_crosses_years_both_ways(month: date, count: int, expected: date) -> None:
    assert add_months(month, count) == expected


def test_a_month_starts_on_its_first_day() -> None:
    assert month_start(datetime(2024, 2, 29, 23, 59, tzinfo=UTC)) == date(2024, 2, 1)
    assert month_start(date(2024, 12, 31)) == date(2024, 12, 1)


def test_partition_names_sort_by_month() -> None:
    months = [add_months(date(2023, 11, 1), n) for n in range(14)]
    names = [partition_name("messages", m) for m in months]
    assert names[0] == "messages_y2023m11" and names[2] == "messages_y2024m01"
    assert sorted(names) == names
