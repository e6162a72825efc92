"""Publishing envelopes to the broker from the listener's asyncio loop.

One thread owns a kombu producer and publishes ``tgfleet.updates.handle`` messages
in FIFO order. The asyncio side hands envelopes over through a bounded buffer:
when the broker is unreachable the thread keeps retrying the message at the head
(order is kept), the buffer fills, and ``publish`` stops returning, which stops the
listener from taking more updates (back-pressure) until Redis is back. Each
envelope's ``on_published`` callback runs on the loop after its publish succeeded,
which is when the listener may advance the saved update state.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

log = logging.getLogger(__name__)

TASK_NAME = "tgfleet.updates.handle"
_STOP = object()


class Publisher:
    """Bounded, ordered, retrying publisher of update envelopes."""

    def __init__(self, app: Celery, loop: asyncio.AbstractEventLoop, capacity: int = 2000):
        self._app = app
        self._loop = loop
        self._queue: queue.Queue[Any] = queue.Queue()
        self._slots = asyncio.Semaphore(capacity)
        self._thread = threading.Thread(target=self._run, name="tgfleet-publisher", daemon=True)
        connection = app.connection_for_write()
        #: What a broker outage raises (the transport's own errors, e.g. redis ones).
        self._retryable: tuple[type[BaseException], ...] = (
            OperationalError,
            OSError,
            *connection.connection_errors,
            *connection.channel_errors,
        )
        connection.release()
        self.published = 0
        self.failures = 0
        self.connected = True

    def start(self) -> None:
        self._thread.start()

    async def publish(
        self, envelope: dict[str, Any], on_published: Callable[[], None] | None = None
    ) -> None:
        """Hand ``envelope`` to the publisher; waits only while the buffer is full."""
        await self.send(TASK_NAME, [envelope], "updates", on_published)

    async def send(
        self,
        task: str,
        args: list[Any],
        queue_name: str,
        on_published: Callable[[], None] | None = None,
    ) -> None:
        """Hand any task message to the publisher, in order with the updates."""
        await self._slots.acquire()
        self._queue.put((task, args, queue_name, on_published))

    @property
    def pending(self) -> int:
        return self._queue.qsize()

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
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._queue.task_done()
                return
            task, args, queue_name, callback = item
            self._publish_until_done(task, args, queue_name)
            self._queue.task_done()
            self.published += 1
            self._loop.call_soon_threadsafe(self._done, callback)

    def _done(self, callback: Callable[[], None] | None) -> None:
        self._slots.release()
        if callback is not None:
            callback()

    def _publish_until_done(self, task: str, args: list[Any], queue_name: str) -> None:
        delay = 0.1
        while True:
            try:
                with self._app.producer_or_acquire() as producer:
                    self._app.send_task(
                        task, args=args, queue=queue_name, producer=producer, retry=False
                    )
                if not self.connected:
                    log.info("broker reachable again; publishing resumes")
                self.connected = True
                return
            except self._retryable as exc:
                self.failures += 1
                if self.connected:
                    log.warning("broker unreachable (%s); holding updates and retrying", exc)
                self.connected = False
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
