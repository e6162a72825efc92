"""The consumer's check of a task message before Celery reads it: what would make Celery
raise out of its consumer is named; protocol 1 and undecodable bodies are left to
Celery's own hooks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu.message import Message

from tgfleet.platform.consumer import raw_of, task_message_problem
from tgfleet.platform.names import HANDLE_UPDATE

HEADERS = {"task": HANDLE_UPDATE, "id": "t-1", "lang": "py"}
GOOD_BODY: list[Any] = [[{"v": 1}], {}, {"callbacks": None, "errbacks": None}]


def task_message(body: Any, headers: dict[str, Any] | None = None, *, raw: bytes = b"") -> Message:
    """A kombu message with a JSON ``body`` (or the bytes ``raw``)."""
    return Message(
        body=raw or json.dumps(body).encode(),
        content_type="application/json",
        content_encoding="utf-8",
        headers=HEADERS if headers is None else headers,
    )


def test_a_task_message_celery_can_read_passes() -> None:
    assert task_message_problem(task_message(GOOD_BODY)) is None
    assert task_message_problem(task_message([[], {}, None])) is None


@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        ("hello", None, "the body is not [args, kwargs, embed]"),
        ([[1], {}], None, "the body is not [args, kwargs, embed]"),
        ([{"v": 1}, {}, {}], None, "the task's args are not an array"),
        ([[], [], {}], None, "the task's kwargs are not an object"),
        ([[], {}, []], None, "the body's embed is not an object"),
        (GOOD_BODY, {"task": HANDLE_UPDATE}, "no task id"),
        (GOOD_BODY, {"task": ["x"], "id": "t-1"}, "the task name is not a string"),
    ],
)
def test_what_celery_would_raise_on_is_named(
    body: Any, headers: dict[str, Any] | None, problem: str
) -> None:
    found = task_message_problem(task_message(body, headers))
    assert found is not None and found.startswith(problem), found


def test_protocol_1_and_undecodable_bodies_are_left_to_celery() -> None:
    # Celery reports these through on_unknown_message / on_decode_error (overridden)
    assert task_message_problem(task_message({"task": HANDLE_UPDATE}, headers={})) is None
    assert task_message_problem(task_message(None, raw=b"\xffnot json")) is None


def test_the_raw_message_is_what_the_broker_held() -> None:
    message = task_message(GOOD_BODY)
    assert raw_of(message) == json.dumps(GOOD_BODY).encode()
    message._raw = {"body": "Zm9v", "properties": {}}  # kombu's virtual transports keep it
    assert json.loads(raw_of(message)) == {"body": "Zm9v", "properties": {}}
