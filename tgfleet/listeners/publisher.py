"""Publishing envelopes to the broker from the listener's asyncio loop.

One thread owns the broker connection and publishes ``tgfleet.updates.handle``
messages in FIFO order. The asyncio side hands envelopes over through a bounded
buffer. The thread takes everything waiting (up to ``MAX_BATCH``) and publishes it
as one batch: each task message is Celery's own (protocol 2, ``before_task_publish``
hooks), built by ``tgfleet.platform.taskmsg`` at a third of ``send_task``'s CPU, and
the batch's ``LPUSH``es go to Redis in one pipeline instead of one round trip each.
Consecutive update envelopes in a batch travel together, up to
``ENVELOPES_PER_TASK`` in one ``tgfleet.updates.handle_batch`` task: a burst costs
the workers one task's overhead per 20 updates. A lone envelope (the usual case at
low rates) is a plain ``tgfleet.updates.handle`` task and waits for nothing.

When the broker is unreachable the thread keeps retrying the batch at the head
(order is kept), the buffer fills, and ``publish`` stops returning, which stops
the listener from taking more updates (back-pressure) until Redis is back. A batch
that failed part-way may have been partly delivered; retrying it publishes those
messages again (at least once; workers deduplicate by the envelope's key). Each
envelope's ``on_published`` callback runs on the loop after its batch was
published, in order, which is when the listener may advance the saved update state.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import redis
from celery import Celery
from kombu.exceptions import BatchPublishError, OperationalError

from tgfleet.platform import taskmsg
from tgfleet.platform.names import HANDLE_UPDATE, HANDLE_UPDATE_BATCH, UPDATES_QUEUE
from tgfleet.platform.taskmsg import TaskCall

log = logging.getLogger(__name__)

#: Most messages published in one Redis pipeline (a round trip).
MAX_BATCH = 500
#: Under a steady stream, how long the publisher waits after an update for more to
#: send with it, and what counts as steady (the last batch went out this recently).
LINGER_S = 0.01
BUSY_GAP_S = 0.05
#: Most envelopes in one task message. A task costs a worker about 2.5 ms of CPU of
#: its own (measured: Celery's receive, ack and bookkeeping), more than handling an
#: echo update; packing a burst amortises it, small enough to keep several workers busy.
ENVELOPES_PER_TASK = 20
#: After a broker outage, envelopes published this long before it are published again
#: (at most RESEND_MAX of them).
RESEND_WINDOW_S = 10.0
RESEND_MAX = 20_000
_STOP = object()


class _Message(NamedTuple):
    #: None: a barrier (``after_published``), nothing to publish.
    task: str | None
    args: list[Any]
    queue: str
    on_published: Callable[[], None] | None


class Publisher:
    """Bounded, ordered, batching, retrying publisher of update envelopes."""

    def __init__(self, app: Celery, loop: asyncio.AbstractEventLoop, capacity: int = 2000):
        self._app = app
        self._loop = loop
        self._queue: queue.Queue[Any] = queue.Queue()
        self._slots = asyncio.Semaphore(capacity)
        self._thread = threading.Thread(target=self._run, name="tgfleet-publisher", daemon=True)
        connection = app.connection_for_write()
        #: What a broker outage raises (the transport's own errors, e.g. redis ones).
        self._retryable: tuple[type[BaseException], ...] = (
            redis.RedisError,
            OperationalError,
            BatchPublishError,
            OSError,
            *connection.connection_errors,
            *connection.channel_errors,
        )
        connection.release()
        self.published = 0
        self.failures = 0
        self.connected = True
        self._last_publish = 0.0  # monotonic time the last batch was taken
        #: (monotonic time, message) of recently published envelopes, and what to resend.
        self._recent: deque[tuple[float, _Message]] = deque(maxlen=RESEND_MAX)
        self._resend: list[_Message] = []

    def start(self) -> None:
        self._thread.start()

    async def publish(
        self, envelope: dict[str, Any], on_published: Callable[[], None] | None = None
    ) -> None:
        """Hand ``envelope`` to the publisher; waits only while the buffer is full."""
        await self.send(HANDLE_UPDATE, [envelope], UPDATES_QUEUE, on_published)

    async def send(
        self,
        task: str,
        args: list[Any],
        queue_name: str,
        on_published: Callable[[], None] | None = None,
    ) -> None:
        """Hand any task message to the publisher, in order with the updates."""
        await self._slots.acquire()
        self._queue.put(_Message(task, args, queue_name, on_published))

    async def after_published(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (on the loop) once everything handed over before it is
        published, in order with the publishes' own callbacks."""
        await self._slots.acquire()
        self._queue.put(_Message(None, [], "", callback))

    @property
    def pending(self) -> int:
        """Messages handed over and not yet published (including a batch being retried)."""
        return self._queue.unfinished_tasks

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed over has been published (True) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self._queue.unfinished_tasks

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    # -- the publishing thread ---------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            taken = self._take()
            messages = [item for item in taken if item is not _STOP]
            stopping = len(messages) < len(taken)
            if messages:
                tasks = [message for message in messages if message.task is not None]
                if tasks:
                    self._publish_until_done(tasks)
                    self.published += len(tasks)
                callbacks = [message.on_published for message in messages]
                self._loop.call_soon_threadsafe(self._done, callbacks)
            for _ in taken:
                self._queue.task_done()

    def _take(self) -> list[Any]:
        """The next item, waiting for it, and whatever else is waiting (up to MAX_BATCH).

        While updates keep coming (the last batch went out less than BUSY_GAP_S ago), it
        lingers up to LINGER_S after the first for more, so that a steady stream travels
        as a few envelopes per task rather than one; a lone update goes out at once.
        """
        first = self._queue.get()
        taken = [first]
        linger_until = time.monotonic() + LINGER_S
        lingering = time.monotonic() - self._last_publish < BUSY_GAP_S
        while len(taken) < MAX_BATCH and taken[-1] is not _STOP:
            try:
                taken.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            wait = linger_until - time.monotonic()
            if not lingering or wait <= 0 or len(taken) >= ENVELOPES_PER_TASK:
                break
            try:
                taken.append(self._queue.get(timeout=wait))
            except queue.Empty:
                break
        self._last_publish = time.monotonic()
        return taken

    def _done(self, callbacks: list[Callable[[], None] | None]) -> None:
        for _ in callbacks:
            self._slots.release()
        for callback in callbacks:
            if callback is None:
                continue
            try:
                callback()
            except Exception:  # one bad callback must not hold back the rest of the batch
                log.exception("on_published callback failed")

    def _publish_until_done(self, messages: list[_Message]) -> None:
        delay = 0.1
        while True:
            try:
                if self._resend:
                    # kombu's Redis transport pops a message (BRPOP) before it records it
                    # as unacknowledged: a worker whose connection broke in between lost it.
                    # Envelopes published just before the outage go again; workers
                    # deduplicate them by key.
                    log.warning(
                        "publishing again %d update message(s) sent in the %.0f s before the "
                        "broker outage",
                        len(self._resend),
                        RESEND_WINDOW_S,
                    )
                    while self._resend:  # in pipelines of MAX_BATCH, oldest first
                        self._publish_batch(self._resend[:MAX_BATCH])
                        del self._resend[:MAX_BATCH]
                self._publish_batch(messages)
                if not self.connected:
                    log.info("broker reachable again; publishing resumes")
                self.connected = True
                self._remember(messages)
                return
            except self._retryable as exc:
                self.failures += 1
                if self.connected:
                    cause = exc.__cause__ or exc  # BatchPublishError wraps the redis error
                    log.warning("broker unreachable (%s); holding updates and retrying", cause)
                    horizon = time.monotonic() - RESEND_WINDOW_S
                    self._resend = [m for at, m in self._recent if at >= horizon]
                    self._recent.clear()
                self.connected = False
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _remember(self, messages: list[_Message]) -> None:
        """Keep the update envelopes just published, for a resend after an outage."""
        now = time.monotonic()
        for message in messages:
            if message.task == HANDLE_UPDATE:
                self._recent.append(
                    (now, _Message(message.task, message.args, message.queue, None))
                )
        while self._recent and self._recent[0][0] < now - RESEND_WINDOW_S:
            self._recent.popleft()

    def _publish_batch(self, messages: list[_Message]) -> None:
        """Celery task messages for ``messages``, sent in one Redis pipeline: built by
        ``tgfleet.platform.taskmsg`` on a Redis broker (``send_task`` cost a fifth of the
        listener's CPU with 20 bots answering), else by kombu's ``Producer.batch``."""
        app = self._app
        if taskmsg.supports(app):
            calls = [
                TaskCall(task, queue, args=args) for task, args, queue in task_messages(messages)
            ]
            taskmsg.publish(app, calls)
            return
        with app.producer_or_acquire() as producer, producer.batch(max_size=2 * MAX_BATCH):
            for task, args, queue_name in task_messages(messages):
                app.send_task(task, args=args, queue=queue_name, producer=producer, retry=False)


def task_messages(messages: list[_Message]) -> list[tuple[str, list[Any], str]]:
    """(task, args, queue) to publish for ``messages``, in order: each run of consecutive
    update envelopes becomes ``handle_batch`` tasks of up to ENVELOPES_PER_TASK (a lone
    envelope stays a plain ``handle``); other messages go as they are."""
    out: list[tuple[str, list[Any], str]] = []
    run: list[Any] = []

    def flush() -> None:
        if len(run) == 1:
            out.append((HANDLE_UPDATE, [run[0]], UPDATES_QUEUE))
        elif run:
            out.append((HANDLE_UPDATE_BATCH, [list(run)], UPDATES_QUEUE))
        run.clear()

    for message in messages:
        if message.task == HANDLE_UPDATE and message.queue == UPDATES_QUEUE:
            run.append(message.args[0])
            if len(run) == ENVELOPES_PER_TASK:
                flush()
        elif message.task is not None:  # (barriers publish nothing)
            flush()
            out.append((message.task, message.args, message.queue))
    flush()
    return out


def envelopes_in(raw: bytes | str) -> list[Any]:
    """The update envelopes in one raw message of the ``updates`` list (none for other
    tasks): for inspecting the queue, in tools, tests and benchmarks."""
    message = json.loads(raw)
    task = message.get("headers", {}).get("task")
    if task not in (HANDLE_UPDATE, HANDLE_UPDATE_BATCH):
        return []
    args = json.loads(base64.b64decode(message["body"]))[0]
    return list(args[0]) if task == HANDLE_UPDATE_BATCH else [args[0]]


class QueuedEnvelopes:
    """Counts the envelopes in a queue's list that nobody consumes, reading only the
    messages pushed since the last call (tests and benchmarks wait on it)."""

    def __init__(self, client: Any, queue_name: str = UPDATES_QUEUE) -> None:
        self.client, self.queue = client, queue_name
        self.messages = 0
        self.envelopes: list[Any] = []

    def __call__(self) -> int:
        total = int(self.client.llen(self.queue))
        if total > self.messages:
            # LPUSH puts the newest at the head, so positions counted from the tail stay
            # put while more are pushed: read the uncounted ones from there.
            fresh = self.client.lrange(self.queue, -total, -self.messages - 1)
            for raw in reversed(fresh):
                self.envelopes.extend(envelopes_in(raw))
            self.messages = total
        return len(self.envelopes)
