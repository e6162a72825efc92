"""``tgfleet send --at/--tz``: every mistake named with its value, before anything runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tgfleet.db import OutboxStatus
from tgfleet.sends.cli import SendCliError, send_time
from tgfleet.sends.outbox import check_send_time, outbox_rows

NEXT_YEAR = datetime.now(UTC).year + 1


def test_a_local_time_in_a_zone_becomes_an_aware_time() -> None:
    at = send_time(f"{NEXT_YEAR}-12-24T09:00", "Europe/Berlin")
    assert at == datetime(NEXT_YEAR, 12, 24, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert at is not None and at.astimezone(UTC).hour == 8


def test_without_a_zone_the_time_is_utc_and_an_offset_is_kept() -> None:
    assert send_time(f"{NEXT_YEAR}-06-01T12:00", None) == datetime(NEXT_YEAR, 6, 1, 12, tzinfo=UTC)
    at = send_time(f"{NEXT_YEAR}-06-01T12:00+02:00", None)
    assert at is not None and at.astimezone(UTC).hour == 10
    assert send_time(None, None) is None


@pytest.mark.parametrize(
    ("at", "tz", "message"),
    [
        ("24.12.2026 9:00", None, "'24.12.2026 9:00' is not a date and time: use ISO 8601"),
        (f"{NEXT_YEAR}-02-30T09:00", None, "is not a date and time"),
        (f"{NEXT_YEAR}-12-24T09:00", "Europe/Berln", "--tz 'Europe/Berln' is not a time zone"),
        (f"{NEXT_YEAR}-12-24T09:00+01:00", "Europe/Berlin", "has its own offset: leave out --tz"),
        ("2020-01-01T00:00", "UTC", "--at '2020-01-01T00:00': the send time 2020-01-01T00:00:00"),
        (None, "Europe/Berlin", "give --at too"),
    ],
)
def test_a_bad_time_is_refused_with_its_value(at: str | None, tz: str | None, message: str) -> None:
    with pytest.raises(SendCliError, match=message.replace("+", r"\+").replace(".", r"\.")):
        send_time(at, tz)


def test_a_send_time_needs_a_zone_and_may_not_be_past() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="needs its time zone"):
        check_send_time(datetime(2026, 12, 24, 9), now)
    with pytest.raises(ValueError, match="is in the past"):
        check_send_time(now - timedelta(minutes=1), now)
    check_send_time(now - timedelta(seconds=2), now)  # a moment ago counts as now


def test_a_scheduled_message_s_first_part_waits_for_its_time_the_rest_for_it() -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    first, second = outbox_rows(1, 42, "x" * 5000, at=at)
    assert (first["status"], first["next_attempt_at"]) == (OutboxStatus.SCHEDULED, at)
    assert second["status"] is OutboxStatus.QUEUED and second["next_attempt_at"].year == 9999
