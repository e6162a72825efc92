"""Poison messages: task messages no worker can run, kept with their reason, never lost.

A message on a queue can be beyond running: bytes that are not a kombu message (pushed
by anything with access to Redis, or half-written), a kombu message that is not a Celery
task message, a task this worker does not know, or a task called with arguments it does
not take. Left alone, some end the worker that takes them (kombu decodes a message
before any tgfleet code runs; Celery raises on a body of the wrong shape) and the others
are dropped with one log line. Three guards catch them, each where the message fails:

* ``platform/transport.py``: kombu's Redis transport, decoding a message off the queue;
* ``platform/consumer.py``: Celery's consumer, turning a message into a task request;
* ``TgfleetTask`` (``platform/celery_app.py``): binding a task's arguments, before its
  body runs.

Each sets the message aside here, once, and the worker carries on: the Redis list
``POISON_MESSAGES``, newest first, the newest ``POISON_KEPT``. An entry holds the
reason, the queue, the task (when known), the message's first ``RAW_KEPT`` bytes and its
full size. ``tgfleet status`` counts them (a problem until they are cleared) and
``tgfleet poison`` lists them, or prints and removes them with ``--clear``.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from tgfleet.platform.names import POISON_MESSAGES
from tgfleet.platform.redis import redis_client

if TYPE_CHECKING:
    from celery import Task

log = logging.getLogger(__name__)

#: How much of a message is kept (its full size is noted).
RAW_KEPT = 64 * 1024
#: How many poison messages Redis keeps (at most about 90 MB with every one at RAW_KEPT).
POISON_KEPT = 1_000
#: How much of a reason is kept.
REASON_KEPT = 1_000


@dataclass(frozen=True)
class PoisonMessage:
    """One message set aside: why, from which queue, and its bytes (the first RAW_KEPT)."""

    reason: str
    queue: str | None
    raw: bytes
    #: The whole message's size in bytes (``raw`` is shorter when it was cut).
    size: int
    at: float
    task: str | None = None
    task_id: str | None = None

    @classmethod
    def of(
        cls,
        raw: bytes,
        reason: str,
        queue: str | None,
        *,
        task: str | None = None,
        task_id: str | None = None,
        at: float | None = None,
    ) -> PoisonMessage:
        """The record of ``raw``, cut to RAW_KEPT bytes."""
        return cls(
            reason=reason[:REASON_KEPT],
            queue=queue,
            raw=bytes(raw[:RAW_KEPT]),
            size=len(raw),
            at=time.time() if at is None else at,
            task=task,
            task_id=task_id,
        )

    @property
    def truncated(self) -> bool:
        return self.size > len(self.raw)

    def preview(self, chars: int = 120) -> str:
        """The start of the message as text, undecodable bytes and controls escaped."""
        text = self.raw[: chars * 4].decode("utf-8", errors="backslashreplace")
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        return shown[:chars] + ("..." if len(shown) > chars or self.truncated else "")

    def as_dict(self) -> dict[str, Any]:
        """As JSON has it: ``raw`` in base64."""
        return {
            "at": self.at,
            "queue": self.queue,
            "task": self.task,
            "task_id": self.task_id,
            "reason": self.reason,
            "size": self.size,
            "truncated": self.truncated,
            "raw": base64.b64encode(self.raw).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: bytes | str) -> PoisonMessage:
        """An entry of ``POISON_MESSAGES``; one that is not ours is shown as it is."""
        try:
            entry = json.loads(data)
            return cls(
                reason=str(entry["reason"]),
                queue=entry.get("queue"),
                raw=base64.b64decode(entry["raw"]),
                size=int(entry["size"]),
                at=float(entry["at"]),
                task=entry.get("task"),
                task_id=entry.get("task_id"),
            )
        except (ValueError, TypeError, KeyError):
            raw = data.encode() if isinstance(data, str) else data
            return cls.of(raw, f"not a poison-message entry of {POISON_MESSAGES}", None, at=0.0)


def set_aside(client: redis.Redis, message: PoisonMessage) -> None:
    """Keep ``message`` in ``POISON_MESSAGES`` (the newest POISON_KEPT stay)."""
    log.error(
        "poison message set aside (queue %s, task %s, %d bytes): %s",
        message.queue,
        message.task,
        message.size,
        message.reason,
    )
    pipe = client.pipeline(transaction=False)
    pipe.lpush(POISON_MESSAGES, json.dumps(message.as_dict()))
    pipe.ltrim(POISON_MESSAGES, 0, POISON_KEPT - 1)
    pipe.execute()


def log_lost(message: PoisonMessage, error: BaseException) -> None:
    """The last resort when Redis would not take ``message``: the log keeps its start."""
    log.error(
        "could not set aside a poison message (%r); it is lost but for this line: "
        "queue %s, task %s, id %s, %d bytes, reason %s, starting %s",
        error,
        message.queue,
        message.task,
        message.task_id,
        message.size,
        message.reason,
        message.preview(2000),
    )


def poison_messages(client: redis.Redis, limit: int | None = None) -> list[PoisonMessage]:
    """The messages set aside, newest first (the newest ``limit``, or all)."""
    entries = client.lrange(POISON_MESSAGES, 0, -1 if limit is None else limit - 1)
    return [PoisonMessage.from_json(entry) for entry in entries]


def take_poison_messages(client: redis.Redis) -> list[PoisonMessage]:
    """Every message set aside, newest first, and remove them: what is returned is
    exactly what was removed (one transaction)."""
    pipe = client.pipeline(transaction=True)
    pipe.lrange(POISON_MESSAGES, 0, -1)
    pipe.delete(POISON_MESSAGES)
    entries, _ = pipe.execute()
    return [PoisonMessage.from_json(entry) for entry in entries]


def unbound_arguments(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why ``task`` cannot take ``args`` and ``kwargs`` (Celery's signature check, the one
    ``apply_async`` makes before publishing), or None when they bind."""
    check = getattr(task, "__header__", None)  # only tasks made from functions have one
    if check is None:
        return None
    try:
        check(*args, **kwargs)
    except TypeError as exc:
        error = str(exc)
    else:
        return None
    try:  # the slow way, for the words: it names the argument, and counts no ``self``
        signature = inspect.signature(task.run)
    except (TypeError, ValueError):  # no signature to read
        return f"arguments the task does not take: {error}"
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        error = f"{exc}; it takes {_bare(signature)}"
    return f"arguments the task does not take: {error}"


def _bare(signature: inspect.Signature) -> str:
    """``signature`` without annotations: ``(bot_id, entities)``."""
    empty = inspect.Parameter.empty
    parameters = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=parameters, return_annotation=empty))


def set_aside_call(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> None:
    """Set aside the message of a task call that cannot run (``unbound_arguments``): its
    raw is the call's arguments as JSON, ``{"args": [...], "kwargs": {...}}``."""
    request = task.request
    raw = json.dumps({"args": list(args), "kwargs": kwargs}, default=repr).encode()
    poison = PoisonMessage.of(
        raw,
        reason,
        (request.delivery_info or {}).get("routing_key"),
        task=task.name,
        task_id=request.id,
    )
    try:
        set_aside(redis_client(str(task.app.conf.broker_url)), poison)
    except Exception as exc:
        log_lost(poison, exc)
        raise
