"""Poison messages as they are kept: the raw bytes cut at RAW_KEPT with the full size
noted, a JSON entry that reads back the same, a readable start; which task calls cannot
bind their arguments."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable

import pytest
from celery import Task

import celeryconfig
from tgfleet.platform.celery_app import TgfleetCelery, make_celery
from tgfleet.platform.names import HANDLE_UPDATE, RECORD_ENTITIES
from tgfleet.platform.poison import (
    POISON_MESSAGES,
    RAW_KEPT,
    PoisonMessage,
    unbound_arguments,
)
from tgfleet.platform.settings import Settings


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> TgfleetCelery:
    """The app with every task module imported (no connection is opened)."""
    for module in celeryconfig.include:
        importlib.import_module(module)
    return make_celery(make_settings())


def test_a_large_message_is_kept_up_to_raw_kept_with_its_full_size() -> None:
    # Given a 100 KiB message
    raw = bytes(range(256)) * 400
    # When it is recorded
    message = PoisonMessage.of(raw, "not JSON: ...", "updates", at=1.0)
    # Then its first 64 KiB are kept, and its size says how much there was
    assert message.raw == raw[:RAW_KEPT] and RAW_KEPT == 64 * 1024
    assert (message.size, message.truncated) == (102_400, True)
    small = PoisonMessage.of(b"abc", "r", "updates")
    assert (small.raw, small.size, small.truncated) == (b"abc", 3, False)


def test_an_entry_reads_back_as_it_was_written() -> None:
    # Given a message with bytes that are not UTF-8, a task and an id
    message = PoisonMessage.of(
        b"\xff\x00{half", "not JSON", "updates", task=HANDLE_UPDATE, task_id="t-1", at=5.0
    )
    # When it is written as the list holds it and read back
    entry = json.dumps(message.as_dict())
    # Then it is the same, raw bytes included
    assert PoisonMessage.from_json(entry) == message
    assert json.loads(entry)["size"] == 7


def test_an_entry_that_is_not_ours_is_shown_not_raised() -> None:
    # Given something else pushed onto the poison list
    foreign = PoisonMessage.from_json(b"\x00 not an entry")
    # Then it is listed as it is, saying so
    assert foreign.raw == b"\x00 not an entry"
    assert POISON_MESSAGES in foreign.reason


def test_the_preview_is_one_line_of_text() -> None:
    message = PoisonMessage.of(b'\xff\x00{"a":\n"b"}' + b"x" * 500, "r", "updates")
    preview = message.preview(40)
    assert preview.startswith('\\xff\\x00{"a":\\n"b"}')
    assert preview.endswith("...") and "\n" not in preview and len(preview) == 43


def test_a_call_binds_or_says_why_not(app: TgfleetCelery) -> None:
    # Given the update tasks: handle(envelope), record_entities(bot_id, entities)
    handle: Task = app.tasks[HANDLE_UPDATE]
    record: Task = app.tasks[RECORD_ENTITIES]
    # Then calls that fit bind, and the others say why not, as Python does
    assert unbound_arguments(handle, ({"v": 1},), {}) is None
    assert unbound_arguments(record, (1,), {"entities": []}) is None
    assert unbound_arguments(handle, ({"v": 1}, "extra"), {}) == (
        "arguments the task does not take: too many positional arguments; it takes (envelope)"
    )
    none = unbound_arguments(handle, (), {})
    assert none is not None and "missing a required argument: 'envelope'" in none
    unknown = unbound_arguments(record, (1, []), {"nope": 1})
    assert unknown is not None and "unexpected keyword argument 'nope'" in unknown
