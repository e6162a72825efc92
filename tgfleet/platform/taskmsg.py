"""Publishing Celery task messages straight to the Redis broker, in one round trip.

``app.send_task`` costs about 1.5 ms of CPU per message (routing, argument reprs, a
new Redis client object per publish inside kombu). The update workers enqueue a
``deliver`` task for every reply, so that is a fifth of what a handled update costs.
``publish`` makes the same message: Celery's own ``as_task_v2`` builds the protocol-2
headers and body, ``before_task_publish`` receivers run, and kombu's serializer
encodes it. It then ``LPUSH``es it onto the queue's list as kombu's Redis transport
would (default exchange, priority 0), several messages in one pipeline, over one
Redis connection per process.

Only for queues that are plain Redis lists on a Redis broker (all of tgfleet's);
``supports(app)`` says whether the app's broker is one.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu.serialization import dumps

from tgfleet.platform.redis import redis_client


@dataclass(frozen=True)
class TaskCall:
    """One task message to publish."""

    name: str
    queue: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    countdown: float | None = None
    #: The task id (None: a new one); a task sending itself again keeps its own.
    task_id: str | None = None


def supports(app: Celery) -> bool:
    """True when ``app``'s broker is Redis, which is what ``publish`` writes to."""
    return str(app.conf.broker_url or "").startswith(("redis://", "rediss://", "unix://"))


def publish(app: Celery, calls: Sequence[TaskCall]) -> list[str]:
    """Publish ``calls`` in order, in one Redis round trip; their task ids."""
    if not calls:
        return []
    pipe = redis_client(str(app.conf.broker_url)).pipeline(transaction=False)
    ids = []
    for call in calls:
        key, payload, task_id = encode(app, call)
        pipe.lpush(key, payload)
        ids.append(task_id)
    pipe.execute()
    return ids


def encode(app: Celery, call: TaskCall) -> tuple[str, bytes, str]:
    """(the queue's Redis list, the message to ``LPUSH`` onto it, its task id) for
    ``call``: what ``publish`` sends, for a caller that pushes it itself (in a script)."""
    prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
    parent = app.current_worker_task
    root_id = parent_id = None
    if parent is not None and parent.request.id is not None:
        root_id = parent.request.root_id or parent.request.id
        parent_id = parent.request.id
    task_id = call.task_id or str(uuid.uuid4())
    message = app.amqp.as_task_v2(
        task_id,
        call.name,
        list(call.args),
        dict(call.kwargs),
        countdown=call.countdown,
        reply_to=app.thread_oid,
        root_id=root_id,
        parent_id=parent_id,
        ignore_result=None,
        argsrepr=_cut(repr(tuple(call.args)), app.amqp.argsrepr_maxsize),
        kwargsrepr=_cut(repr(call.kwargs), app.amqp.kwargsrepr_maxsize),
    )
    headers, properties = message.headers, message.properties
    before_task_publish.send(
        sender=call.name,
        body=message.body,
        exchange="",
        routing_key=call.queue,
        headers=headers,
        properties=properties,
        declare=[],
        retry_policy=None,
    )
    content_type, encoding, data = dumps(message.body, serializer="json")
    body = data.encode(encoding) if isinstance(data, str) else data
    transport_message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": call.queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    _, _, payload = dumps(transport_message, serializer="json")
    return prefix + call.queue, payload.encode() if isinstance(payload, str) else payload, task_id


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, as ``send_task`` cuts its reprs (the
    arguments themselves travel in the body; the repr is for monitors and logs)."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
