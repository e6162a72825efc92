"""A daemon thread that does one piece of work every interval, with jitter, until stopped.

A failed run is logged and the thread goes on: the next interval tries again.
"""

from __future__ import annotations

import logging
import random
import threading

log = logging.getLogger(__name__)


class PeriodicThread:
    """Calls ``tick()`` every ``interval`` seconds times U(``jitter``, 1)."""

    def __init__(self, name: str, interval: float, jitter: float = 0.5) -> None:
        self._interval = interval
        self._jitter = jitter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval * random.uniform(self._jitter, 1.0)):
            try:
                self.tick()
            except Exception:
                log.exception("%s failed; trying again next interval", self._thread.name)
