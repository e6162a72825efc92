"""How a listener's handed-over messages become task messages: runs of update envelopes
travel together (up to ENVELOPES_PER_TASK), everything keeps its order. No broker."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from celery import Celery
from kombu.serialization import dumps

from tgfleet.listeners.publisher import ENVELOPES_PER_TASK, _Message, envelopes_in, task_messages
from tgfleet.platform.names import (
    HANDLE_UPDATE,
    HANDLE_UPDATE_BATCH,
    RECORD_ENTITIES,
    UPDATES_QUEUE,
)


def update(n: int) -> _Message:
    return _Message(HANDLE_UPDATE, [{"key": f"m:1:{n}"}], UPDATES_QUEUE, None)


def entities(n: int) -> _Message:
    return _Message(
        RECORD_ENTITIES, [42, [["user", n, 1, None, None, None, None]]], UPDATES_QUEUE, None
    )


def test_a_lone_envelope_is_a_plain_handle_task() -> None:
    assert task_messages([update(1)]) == [(HANDLE_UPDATE, [{"key": "m:1:1"}], UPDATES_QUEUE)]


def test_a_run_of_envelopes_is_batched_in_order() -> None:
    [(task, args, queue)] = task_messages([update(n) for n in range(3)])
    assert (task, queue) == (HANDLE_UPDATE_BATCH, UPDATES_QUEUE)
    assert args == [[{"key": "m:1:0"}, {"key": "m:1:1"}, {"key": "m:1:2"}]]


def test_a_long_run_is_cut_at_the_batch_size() -> None:
    # Given two and a half batches' worth of envelopes
    count = 2 * ENVELOPES_PER_TASK + 5
    tasks = task_messages([update(n) for n in range(count)])
    # Then full batches, then the rest, every envelope once and in order
    assert [len(args[0]) for _, args, _ in tasks] == [ENVELOPES_PER_TASK, ENVELOPES_PER_TASK, 5]
    keys = [env["key"] for _, args, _ in tasks for env in args[0]]
    assert keys == [f"m:1:{n}" for n in range(count)]


def test_a_run_of_exactly_one_batch_leaves_no_empty_task() -> None:
    tasks = task_messages([update(n) for n in range(ENVELOPES_PER_TASK)])
    assert [task for task, _, _ in tasks] == [HANDLE_UPDATE_BATCH]


def test_other_messages_cut_runs_and_keep_their_place() -> None:
    # Given updates, an entity record, then more updates
    tasks = task_messages([update(1), update(2), entities(7), update(3)])
    # Then the order is kept: a batch, the other task as it was, a lone update
    assert [task for task, _, _ in tasks] == [HANDLE_UPDATE_BATCH, RECORD_ENTITIES, HANDLE_UPDATE]
    assert tasks[1] == (RECORD_ENTITIES, entities(7).args, UPDATES_QUEUE)


def test_no_messages_make_no_tasks() -> None:
    assert task_messages([]) == []


def raw_message(task: str, args: list[Any]) -> bytes:
    """A task message as kombu's Redis transport stores it in the queue's list."""
    message = Celery(set_as_current=False).amqp.as_task_v2("id-1", task, args, {})
    _, _, body = dumps(message.body, serializer="json")
    payload = {"body": base64.b64encode(body.encode()).decode(), "headers": message.headers}
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("task", "args", "envelopes"),
    [
        (HANDLE_UPDATE, [{"key": "a"}], [{"key": "a"}]),
        (HANDLE_UPDATE_BATCH, [[{"key": "a"}, {"key": "b"}]], [{"key": "a"}, {"key": "b"}]),
        (RECORD_ENTITIES, [42, []], []),
    ],
)
def test_envelopes_are_read_back_from_queued_messages(
    task: str, args: list[Any], envelopes: list[Any]
) -> None:
    assert envelopes_in(raw_message(task, args)) == envelopes
