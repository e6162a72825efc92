"""Child processes the demo and the tests start, and stop, as one group."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM the child's process group (it is its own session leader)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> None:
        """Wait ``timeout`` seconds for the child to exit, then SIGKILL its group."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the child's process group and wait; SIGKILL it after ``timeout``."""
        self.terminate()
        self.wait_or_kill(timeout)


class ProcessGroup:
    """Starts commands with their output in ``log_dir``; ``stop()`` ends them all."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(
        self, name: str, argv: Sequence[str], extra_env: Mapping[str, str] | None = None
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        out: IO[bytes] = log_path.open("ab")
        process = subprocess.Popen(
            list(argv),
            env={**self.env, **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        child = Child(name, process, log_path)
        self.children.append(child)
        log.info("started %s (pid %d), log %s", name, process.pid, log_path)
        return child

    def celery(self, name: str, *args: str, extra_env: Mapping[str, str] | None = None) -> Child:
        return self.start(name, [sys.executable, "-m", "celery", "-A", "tgfleet", *args], extra_env)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child's process group, then SIGKILL what is left."""
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in self.children:
            child.wait_or_kill(max(0.1, deadline - time.monotonic()))
        self.children.clear()

    def dead(self) -> list[Child]:
        return [child for child in self.children if not child.alive]

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
