"""Run a simulator on its own event loop in a background thread, for synchronous code
(pytest fixtures, benchmarks). Control it like another process would: over HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from tgfleet.simulator.client import SimulatorClient
from tgfleet.simulator.config import SimulatorConfig
from tgfleet.simulator.server import Simulator

T = TypeVar("T")


class SimulatorThread(SimulatorClient):
    """``with SimulatorThread() as sim: sim.create_bot()...``; every SimulatorClient method
    works, plus ``host``/``port``/``public_pem`` and :meth:`call` for in-loop access."""

    def __init__(self, config: SimulatorConfig | None = None, **overrides: Any) -> None:
        config = config or SimulatorConfig(**overrides)
        if config.control_port is None:
            config.control_port = 0
        super().__init__("http://unstarted")
        self.sim = Simulator(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    def start(self) -> SimulatorThread:
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="tgfleet-simulator", daemon=True
        )
        self._thread.start()
        started.result(timeout=60)
        assert self.sim.control_url is not None
        self.base_url = self.sim.control_url
        return self

    def _run(self, started: Future[None]) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                await self.sim.start()
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(None)
            await self._stopped.wait()
            await self.sim.stop()

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the simulator's loop (where its state lives) and return the result."""
        assert self._loop is not None, "the simulator thread is not running"

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    @property
    def host(self) -> str:
        return self.sim.config.host

    @property
    def port(self) -> int:
        return self.sim.port

    @property
    def public_pem(self) -> str:
        return self.sim.public_pem

    def write_rsa_key(self, path: str | Path) -> Path:
        return self.sim.write_rsa_key(path)

    def env(self, key_path: str | Path) -> dict[str, str]:
        """The settings that point a client at this simulator (``TG_SERVER`` and its RSA
        key, written to ``key_path``)."""
        return {
            "TG_SERVER": f"{self.host}:{self.port}",
            "TG_SERVER_RSA_KEY_FILE": str(self.write_rsa_key(key_path)),
        }
