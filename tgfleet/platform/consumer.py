"""The worker's consumer: Celery's, setting aside messages it cannot run as tasks.

A message kombu delivered can still be no task a worker can run. Celery drops some with
one log line (a task this worker does not know, an invalid ETA, a body that does not
decode, a message of no known protocol), and others it does not expect end the worker:
a body that is not ``[args, kwargs, embed]`` raises out of its consumer
(``Unrecoverable error: ValueError``), and the message, recorded as delivered and never
acknowledged, is given back to the queue for the next worker to die on. ``Consumer``
sets each aside with its reason (``platform/poison.py``) and acknowledges it: checked
before Celery reads it (``task_message_problem``), in Celery's hooks for the messages it
drops, and, for anything else that raises while Celery turns a message into a request,
around the whole of it.

``celeryconfig.worker_consumer`` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.message import Message
from kombu.utils.json import dumps
from vine import promise

from tgfleet.platform.poison import PoisonMessage, log_lost, set_aside
from tgfleet.platform.redis import redis_client


def task_message_problem(message: Message) -> str | None:
    """What in a protocol-2 task message would make Celery fail while reading it, None
    when nothing does. A message that is not protocol 2, or whose body does not decode,
    is left to Celery, which reports it through the hooks ``Consumer`` overrides."""
    headers = message.headers
    if not isinstance(headers, dict) or "task" not in headers:
        return None
    if not isinstance(headers["task"], str):
        return f"the task name is not a string ({headers['task']!r:.60})"
    if not isinstance(headers.get("id"), str):
        return "no task id"
    try:
        body = message.payload  # decoded once: Celery reads it from the same cache
    except Exception:
        return None
    if not isinstance(body, list | tuple) or len(body) != 3:
        return "the body is not [args, kwargs, embed]"
    args, kwargs, embed = body
    if not isinstance(args, list | tuple):
        return "the task's args are not an array"
    if not isinstance(kwargs, dict):
        return "the task's kwargs are not an object"
    if embed is not None and not isinstance(embed, dict):
        return "the body's embed is not an object"
    return None


def raw_of(message: Message) -> bytes:
    """The message as the broker held it (kombu's virtual transports keep it decoded)."""
    raw = getattr(message, "_raw", None)
    if isinstance(raw, dict):
        return dumps(raw).encode()
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode()


class Consumer(CeleryConsumer):
    """Celery's consumer; a message it cannot run as a task is set aside, not lost."""

    def set_aside(self, message: Message, reason: str) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        task, task_id = headers.get("task"), headers.get("id")
        poison = PoisonMessage.of(
            raw_of(message),
            reason,
            (message.delivery_info or {}).get("routing_key"),
            task=task if isinstance(task, str) else None,
            task_id=task_id if isinstance(task_id, str) else None,
        )
        try:
            set_aside(redis_client(str(self.app.conf.broker_url)), poison)
        except Exception as exc:
            log_lost(poison, exc)

    def create_task_handler(self, promise: Any = promise) -> Callable[[Message], Any]:
        on_task_received = super().create_task_handler(promise)
        # kombu's Redis transport counts KeyError among its connection errors; here a
        # KeyError is the message's (a header Celery expects), not the connection's.
        connection_errors = tuple(e for e in self.connection_errors if e is not KeyError)

        def on_message(message: Message) -> Any:
            problem = task_message_problem(message)
            if problem is not None:
                self.set_aside(message, f"not a task message: {problem}")
                message.ack()
                return None
            try:
                return on_task_received(message)
            except connection_errors:
                raise
            except Exception as exc:
                self.set_aside(message, f"Celery could not read the task message: {exc!r:.300}")
                if not message.acknowledged:
                    message.ack()
                return None

        return on_message

    def on_unknown_message(self, body: Any, message: Message) -> None:
        self.set_aside(message, "not a task message of a protocol Celery knows")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Message, exc: BaseException) -> None:
        self.set_aside(message, f"a task this worker does not know: {exc!r:.200}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Message, exc: BaseException) -> None:
        self.set_aside(message, f"an invalid task message: {exc!r:.300}")
        super().on_invalid_task(body, message, exc)

    def on_decode_error(self, message: Message, exc: BaseException) -> None:
        self.set_aside(message, f"the body does not decode: {exc!r:.300}")
        super().on_decode_error(message, exc)
