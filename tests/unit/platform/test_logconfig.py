"""Log lines carry task context; secrets never reach them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

import pytest

from tgfleet.platform.logconfig import (
    TASK_LOGGERS,
    ContextFilter,
    configure_logging,
    log_context,
)
from tgfleet.platform.settings import Settings

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


def capture(settings: Settings) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    return stream


def test_plain_lines_carry_context_and_hide_secrets(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    stream = capture(settings)
    secret = settings.secret_key.get_secret_value()
    with log_context(task_id="t-1", queue="sends", bot_id=42):
        logging.getLogger("tgfleet.test").info("token %s key %s", TOKEN, secret)
    line = stream.getvalue()
    assert "task_id=t-1" in line and "queue=sends" in line and "bot_id=42" in line
    assert TOKEN not in line and secret not in line
    assert line.count("[redacted]") == 2


def test_json_lines_are_parseable_with_context(make_settings: Callable[..., Settings]) -> None:
    stream = capture(make_settings(TGFLEET_LOG_FORMAT="json"))
    with log_context(task_id="t-2", bot_id=7):
        try:
            raise RuntimeError(f"login failed for {TOKEN}")
        except RuntimeError:
            logging.getLogger("tgfleet.test").exception("boom")
    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["task_id"] == "t-2" and record["bot_id"] == 7 and record["msg"] == "boom"
    assert TOKEN not in stream.getvalue() and "[redacted]" in record["exc"]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"token {TOKEN} here", "token [redacted] here"),
        ("session 1" + "A" * 250 + " saved", "session [redacted] saved"),
        ("secret hunter2pass in a line", "secret [redacted] in a line"),
        ("short key abc stays", "short key abc stays"),  # under 6 characters: not a secret
        ("order 12345:67 is fine", "order 12345:67 is fine"),
    ],
)
def test_redaction_removes_tokens_sessions_and_configured_secrets(text: str, kept: str) -> None:
    # Given a filter that knows two secrets, one too short to be searched for
    redactor = ContextFilter(secrets=("hunter2pass", "abc"))
    # When a line is redacted, Then only the secret-looking parts go
    assert redactor.redact(text) == kept


def test_nested_contexts_add_and_restore() -> None:
    # Given a record filtered inside nested contexts (None values are left out)
    stamp = ContextFilter()

    def context_now() -> str:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", None, None)
        stamp.filter(record)
        return str(record.ctx_text)

    with log_context(task_id="t-1", bot_id=None):
        with log_context(bot_id=7):
            inner = context_now()
        outer = context_now()
    # Then the inner one sees both, and leaving it restores the outer one
    assert inner == " task_id=t-1 bot_id=7"
    assert outer == " task_id=t-1"
    assert context_now() == ""


def celery_task_lines() -> None:
    """The lines Celery writes about every task, from its own loggers and at their levels."""
    logging.getLogger("celery.worker.strategy").info("Task tgfleet.sends.deliver[t-1] received")
    trace = logging.getLogger("celery.app.trace")
    trace.info("Task tgfleet.sends.deliver[t-1] succeeded in 0.01s: 'sent'")
    trace.error("Task tgfleet.sends.deliver[t-2] raised unexpected: boom")


def test_celery_task_lines_are_left_out_at_info_but_their_errors_are_not(
    make_settings: Callable[..., Settings],
) -> None:
    # Given a worker's logging at the default level
    stream = capture(make_settings())
    # When Celery logs a task received, one succeeded and one failed
    celery_task_lines()
    logging.getLogger("tgfleet.test").info("a tgfleet line")
    # Then only the failure and tgfleet's own INFO line are written
    lines = stream.getvalue()
    assert "received" not in lines and "succeeded" not in lines
    assert "raised unexpected: boom" in lines and "a tgfleet line" in lines


@pytest.mark.parametrize(
    "overrides", [{"TGFLEET_LOG_TASKS": "true"}, {"TGFLEET_LOG_LEVEL": "DEBUG"}]
)
def test_celery_task_lines_are_written_when_asked_for_or_at_debug(
    make_settings: Callable[..., Settings], overrides: dict[str, str]
) -> None:
    stream = capture(make_settings(**overrides))
    celery_task_lines()
    lines = stream.getvalue()
    assert "received" in lines and "succeeded in 0.01s" in lines and "boom" in lines


def test_celery_task_lines_follow_a_level_above_warning(
    make_settings: Callable[..., Settings],
) -> None:
    # Given logging at ERROR: a task logger's warning is below it, as everyone else's
    stream = capture(make_settings(TGFLEET_LOG_LEVEL="ERROR"))
    logging.getLogger("celery.app.trace").warning("a warning")
    celery_task_lines()
    assert "a warning" not in stream.getvalue() and "boom" in stream.getvalue()


def teardown_function() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for name in TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
