"""Child processes the demo and the tests start, and stop, as one group.

A group made with a ``RestartPolicy`` supervises its children: a thread looks at them
every ``poll_s`` and starts one that exited again, with the policy's backoff
(``restarts.py``), until it keeps dying at start and the group gives up on it. What it
did is kept as ``ProcessEvent``s for the owner to show (``take_events``), logged at INFO
and noted in the child's own log. Without a policy (the tests' own groups) a child that
exits stays dead, as a test that kills one expects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO

from tgfleet.dev.restarts import RestartBackoff, RestartPolicy, Verdict, describe_exit

log = logging.getLogger(__name__)


def child_environ(*layers: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child started against other services (a bench's, a test's):
    this process's, less its own ``TGFLEET_``/``TG_`` settings, then ``layers`` in order."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGFLEET_", "TG_"))}
    for layer in layers:
        env.update(layer)
    return env


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    #: When the current process started (monotonic).
    started_at: float = field(default_factory=time.monotonic)
    #: Times the group's supervisor started it again.
    restarts: int = 0
    #: The supervisor stopped restarting it (it kept dying at start).
    given_up: bool = False
    backoff: RestartBackoff | None = field(default=None, repr=False)
    #: While it waits to be started again: when (monotonic).
    restart_at: float | None = field(default=None, repr=False)

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


class ProcessEventKind(StrEnum):
    EXITED = "exited"  # and will be started again
    RESTARTED = "restarted"
    GAVE_UP = "gave up"


@dataclass(frozen=True)
class ProcessEvent:
    """What the supervisor did about one child."""

    kind: ProcessEventKind
    name: str
    #: How the process ended (``killed by SIGKILL``, ``exit code 1``).
    how: str
    ran_for_s: float
    #: Seconds until it is started again (EXITED).
    delay_s: float = 0.0
    #: The child's restarts so far; its new pid (RESTARTED).
    restarts: int = 0
    pid: int | None = None
    #: Quick exits in a row (GAVE_UP: how many it took to give up).
    quick_exits: int = 0
    log_path: Path | None = None

    def describe(self, policy: RestartPolicy | None = None) -> str:
        """One line for people."""
        if self.kind is ProcessEventKind.EXITED:
            return (
                f"{self.name} stopped ({self.how}) after {self.ran_for_s:.0f} s: "
                f"starting it again in {self.delay_s:g} s"
            )
        if self.kind is ProcessEventKind.RESTARTED:
            return f"{self.name} started again (pid {self.pid}, restart {self.restarts})"
        within = f" within {policy.stable_after_s:g} s of starting" if policy else ""
        return (
            f"{self.name} keeps stopping: {self.quick_exits} times in a row{within} "
            f"(last: {self.how}); not starting it again (see {self.log_path})"
        )


class ProcessGroup:
    """Starts commands with their output in ``log_dir``; ``stop()`` ends them all.

    With ``restart`` set, children that exit are started again (see the module doc).
    """

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str],
        restart: RestartPolicy | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.children: list[Child] = []
        self.restart = restart
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._events: queue.SimpleQueue[ProcessEvent] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(
        self, name: str, argv: Sequence[str], extra_env: Mapping[str, str] | None = None
    ) -> Child:
        env = {**self.env, **(extra_env or {})}
        child = Child(
            name,
            self._spawn(name, argv, env),
            self.log_dir / f"{name}.log",
            argv=list(argv),
            env=env,
            backoff=None if self.restart is None else RestartBackoff(self.restart),
        )
        with self._lock:
            self.children.append(child)
        log.info("started %s (pid %d), log %s", name, child.process.pid, child.log_path)
        if self.restart is not None and self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._supervise, name="tgfleet-supervisor", daemon=True
            )
            self._supervisor.start()
        return child

    def _spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> subprocess.Popen[bytes]:
        out: IO[bytes] = (self.log_dir / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(
                list(argv),
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            out.close()

    def celery(self, name: str, *args: str, extra_env: Mapping[str, str] | None = None) -> Child:
        return self.start(name, [sys.executable, "-m", "celery", "-A", "tgfleet", *args], extra_env)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop supervising, SIGTERM every child's process group, then SIGKILL what is left."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in self.children:
            child.wait_or_kill(max(0.1, deadline - time.monotonic()))
        self.children.clear()
        self._stopping.clear()  # the group can start (and supervise) children again

    def dead(self) -> list[Child]:
        return [child for child in self.children if not child.alive]

    def given_up(self) -> list[Child]:
        """Children the supervisor stopped restarting."""
        return [child for child in self.children if child.given_up]

    def take_events(self) -> list[ProcessEvent]:
        """What the supervisor did since the last call, oldest first."""
        events = []
        with contextlib.suppress(queue.Empty):
            while True:
                events.append(self._events.get_nowait())
        return events

    # -- supervision ------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._stopping.wait(self.poll_s):
            try:
                self._check()
            except Exception:  # one bad pass must not end supervision
                log.exception("supervising %s failed; trying again", self.log_dir)

    def _check(self) -> None:
        """One supervision pass: note children that exited, start those that are due."""
        with self._lock:
            for child in self.children:
                if self._stopping.is_set():
                    return
                if child.backoff is None or child.given_up:
                    continue
                if child.restart_at is None:
                    returncode = child.process.poll()
                    if returncode is not None:
                        # Members of its process group it left behind (a Celery worker's
                        # pool processes) go too, before a new one starts.
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(child.process.pid, signal.SIGKILL)
                        self._exited(child, describe_exit(returncode))
                elif time.monotonic() >= child.restart_at:
                    self._restart(child)

    def _exited(self, child: Child, how: str) -> None:
        assert child.backoff is not None
        now = time.monotonic()
        ran_for = now - child.started_at
        decision = child.backoff.after_exit(ran_for)
        if decision.verdict is Verdict.GIVE_UP:
            child.given_up = True
            event = ProcessEvent(
                ProcessEventKind.GAVE_UP,
                child.name,
                how,
                ran_for,
                restarts=child.restarts,
                quick_exits=decision.quick_exits,
                log_path=child.log_path,
            )
            log.info("%s", event.describe(self.restart))
        else:
            child.restart_at = now + decision.delay_s
            event = ProcessEvent(
                ProcessEventKind.EXITED,
                child.name,
                how,
                ran_for,
                delay_s=decision.delay_s,
                restarts=child.restarts,
                quick_exits=decision.quick_exits,
                log_path=child.log_path,
            )
            log.info("%s", event.describe())
        self._note_in_log(child, event.describe(self.restart))
        self._events.put(event)

    def _restart(self, child: Child) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            child.process = self._spawn(child.name, child.argv, child.env)
        except OSError as exc:  # a quick exit of its own
            self._exited(child, f"could not start: {exc}")
            return
        child.restarts += 1
        event = ProcessEvent(
            ProcessEventKind.RESTARTED,
            child.name,
            "",
            0.0,
            restarts=child.restarts,
            pid=child.process.pid,
            log_path=child.log_path,
        )
        log.info("%s", event.describe())
        self._events.put(event)

    @staticmethod
    def _note_in_log(child: Child, line: str) -> None:
        with contextlib.suppress(OSError), child.log_path.open("a") as out:
            out.write(f"--- tgfleet supervisor: {line} ---\n")

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
