"""When a queued message became due: its publish stamp or its ETA, whichever is later."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tgfleet.platform.queues import PUBLISHED_AT_HEADER, _stamp_publish_time, message_due_at

ETA = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def raw(**headers: Any) -> bytes:
    return json.dumps({"headers": headers, "body": ""}).encode()


@pytest.mark.parametrize(
    ("headers", "due"),
    [
        ({PUBLISHED_AT_HEADER: 1000.0}, 1000.0),
        ({PUBLISHED_AT_HEADER: 1000.0, "eta": ETA.isoformat()}, ETA.timestamp()),
        ({PUBLISHED_AT_HEADER: ETA.timestamp() + 5, "eta": ETA.isoformat()}, ETA.timestamp() + 5),
        ({"eta": ETA.isoformat()}, ETA.timestamp()),
        ({"eta": "soon"}, None),
        ({PUBLISHED_AT_HEADER: "yesterday"}, None),
        ({}, None),
    ],
)
def test_a_message_is_due_at_the_later_of_publish_and_eta(
    headers: dict[str, Any], due: float | None
) -> None:
    assert message_due_at(raw(task="tgfleet.sends.deliver", **headers)) == (
        due,
        "tgfleet.sends.deliver",
    )


@pytest.mark.parametrize("garbage", [b"not json", b"[1, 2]", b'{"headers": null}'])
def test_garbage_in_a_queue_has_no_due_time(garbage: bytes) -> None:
    assert message_due_at(garbage) == (None, None)


def test_publishing_stamps_the_time_once() -> None:
    # Given a message's headers, When it is published twice (a retry), Then the first
    # stamp stays, so its age counts from when it was first queued
    headers: dict[str, Any] = {}
    _stamp_publish_time(headers=headers)
    first = headers[PUBLISHED_AT_HEADER]
    _stamp_publish_time(headers=headers)
    assert headers[PUBLISHED_AT_HEADER] == first
