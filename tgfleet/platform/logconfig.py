"""Logging for tgfleet's entry points: plain or JSON lines with task context.

Only entry points call ``configure_logging``. A filter stamps every record with
the current task id, queue and bot id (set by the Celery base task through
``log_context``) and redacts secrets: bot tokens, session strings and the
configured secret values never reach a log line.

Celery's lines about every single task (received, succeeded, retried) are shown at
DEBUG, or at INFO with ``TGFLEET_LOG_TASKS=true``: at hundreds of tasks a second they
cost the busiest workers CPU (two lines per task, each formatted, filtered and written).
Their warnings and errors always show (docs/operations.md, "Logging").
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from tgfleet.platform.settings import LogFormat, Settings

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "tgfleet_log_context", default=_EMPTY
)
#: A Telegram bot token: "<bot id>:<35 url-safe chars>".
_BOT_TOKEN = re.compile(r"\b\d{3,12}:[A-Za-z0-9_-]{30,}")
#: A Telethon StringSession ("1" + long base64).
_STRING_SESSION = re.compile(r"\b1[A-Za-z0-9+/=_-]{200,}")
_REDACTED = "[redacted]"


@contextlib.contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Attach ``values`` (task_id, queue, bot_id...) to every log record inside."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Adds the log context to records and strips secrets from messages."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s and len(s) >= 6)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        text = _BOT_TOKEN.sub(_REDACTED, text)
        return _STRING_SESSION.sub(_REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        record.ctx = context
        record.ctx_text = "".join(f" {k}={v}" for k, v in context.items())
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "ctx", {}),
        }
        if record.exc_text:
            payload["exc"] = record.exc_text
        elif record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s:%(ctx_text)s %(message)s"
#: Celery's loggers of per-task lines: "Task ... received" (the consumer), "... succeeded
#: in ...s" and "... retry: ..." (the tracer). Celery checks their level once, at start.
TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Configure the root logger once for an entry point."""
    secrets = tuple(
        value.get_secret_value()
        for value in (settings.secret_key, settings.tg_api_hash, settings.flower_password)
        if value is not None
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(secrets))
    if settings.log_format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    quiet = max(logging.WARNING, root.level)
    # (alembic.runtime.plugins: a line per plugin each time alembic is imported)
    noisy_loggers = (
        "telethon",
        "kombu",
        "amqp",
        "urllib3",
        "tornado.access",
        "alembic.runtime.plugins",
    )
    for noisy in noisy_loggers:
        logging.getLogger(noisy).setLevel(quiet)
    per_task = settings.log_tasks or root.level <= logging.DEBUG
    for name in TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if per_task else quiet)
