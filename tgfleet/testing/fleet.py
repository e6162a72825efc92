"""One test's bots: each in the simulator and in the fleet, run by real processes (a
``tgfleet listen`` per bot, an update worker and a sender worker shared by the test's
bots), stopped and removed at the end of the test."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgfleet.bots.apps import load_app
from tgfleet.db import fleet
from tgfleet.dev.processes import Child, ProcessGroup
from tgfleet.platform.names import SENDS_QUEUE, UPDATES_QUEUE
from tgfleet.platform.settings import Settings
from tgfleet.simulator import SimulatorClient
from tgfleet.testing.waiting import ExpectationFailed, wait_for

#: How long a bot's processes may take to come up, seconds.
START_TIMEOUT_S = 90.0
#: Error lines quoted from the processes' logs when an expectation fails.
QUOTED_ERRORS = 8
_worker_names = itertools.count(1)


@dataclass
class RunningBot:
    """A bot running an app on real processes: its simulator identity and its fleet."""

    id: int
    username: str
    app: str
    admins: list[int]
    listener: Child = field(repr=False)
    fleet: LocalFleet = field(repr=False)

    @property
    def mention(self) -> str:
        return f"@{self.username}"

    def check_alive(self) -> None:
        """Fail at once, with its log's tail, if one of the bot's processes has died."""
        __tracebackhide__ = True
        for child in (self.listener, *self.fleet.workers):
            if not child.alive:
                raise ExpectationFailed(
                    f"{child.name} of {self.mention} exited (code {child.process.returncode});"
                    f" its log ends:\n{log_tail(child)}"
                )

    def diagnostics(self) -> str:
        """Where the processes' logs are, and the last errors they logged."""
        errors = [
            f"    {child.name}: {line[:300]}"
            for child in (self.listener, *self.fleet.workers)
            for line in error_lines(child)
        ][-QUOTED_ERRORS:]
        where = f"The bot's processes log to {self.fleet.log_dir}"
        if not errors:
            return f"{where}; they logged no errors."
        return f"{where}; their last errors:\n" + "\n".join(errors)


class LocalFleet:
    """Starts bots for one test (``start_bot``) and stops everything (``stop``)."""

    def __init__(
        self,
        simulator: SimulatorClient,
        settings: Settings,
        env: Mapping[str, str],
        log_dir: Path,
        project_root: Path,
    ) -> None:
        self.simulator = simulator
        self.settings = settings
        self.log_dir = log_dir
        self.project_root = project_root
        self.group = ProcessGroup(log_dir, env)
        self.workers: list[Child] = []
        self.bots: list[RunningBot] = []

    def start_bot(
        self, app: str, admins: Iterable[int] = (), username: str | None = None
    ) -> RunningBot:
        """A new bot running ``app`` (a registered name or ``package.module:router``),
        listened for and worked on; returns once its processes are ready."""
        __tracebackhide__ = True
        self._check_app(app)
        made = self.simulator.create_bot(username=username)
        bot_id, admin_ids = int(made["id"]), [int(admin) for admin in admins]
        name = made.get("username") or f"bot{bot_id}"
        fleet.save_bot(self.settings, made["token"], name=name, admin_chat_ids=admin_ids, app=app)
        listener = self.group.start(
            f"listener-{bot_id}",
            [sys.executable, "-m", "tgfleet", "listen", "--bots", str(bot_id)],
        )
        bot = RunningBot(bot_id, name, app, admin_ids, listener, self)
        self.bots.append(bot)  # (removed at the end even if its processes fail to start)
        started = [(listener, f"listening for bot {bot_id}")]
        if not self.workers:
            self.workers = [
                self._worker(UPDATES_QUEUE, "prefork", 1),
                self._worker(SENDS_QUEUE, "threads", 4),
            ]
            started += [(worker, "ready.") for worker in self.workers]
        for child, needle in started:  # (they start in parallel)
            wait_for_log(child, needle, START_TIMEOUT_S)
        return bot

    def _worker(self, queue: str, pool: str, concurrency: int) -> Child:
        name = f"tgfleet-testing-{queue}-{os.getpid()}-{next(_worker_names)}@%h"
        return self.group.celery(
            f"{queue}-worker",
            "worker",
            *("-Q", queue, "-P", pool, "-c", str(concurrency), "-n", name),
            *("--loglevel", "INFO", "--without-mingle", "--without-gossip"),
        )

    def _check_app(self, app: str) -> None:
        """Refuse an app the workers could not load, now and with the reason."""
        root = str(self.project_root)
        if root not in sys.path:
            sys.path.append(root)  # the workers get the project root on PYTHONPATH
        load_app(app)

    def stop(self) -> None:
        """Stop every process, then remove the bots from the fleet."""
        self.group.stop()
        for bot in self.bots:
            with contextlib.suppress(Exception):
                fleet.remove_bot(self.settings, bot.id)
        self.bots.clear()
        self.workers = []


def log_tail(child: Child, chars: int = 3000) -> str:
    return child.log_path.read_text(errors="replace")[-chars:]


def error_lines(child: Child) -> list[str]:
    """The lines of the child's log that report an error, and each traceback's exception."""
    lines = child.log_path.read_text(errors="replace").splitlines()
    found = []
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            # the exception is the first line after the (indented) frames
            raised = next((a for a in lines[index + 1 :] if a and not a[0].isspace()), None)
            found += [f"  raised {raised}"] if raised else []
        elif any(marker in line for marker in (" ERROR ", "ERROR/", " CRITICAL ")):
            found.append(line)
    return found


def wait_for_log(child: Child, needle: str, timeout: float) -> None:
    """Wait until ``needle`` is in the child's log; fail with its tail if it exits first."""
    __tracebackhide__ = True

    def logged() -> bool:
        alive = child.alive  # (read before the log: a child may log, then exit)
        if needle in child.log_path.read_text(errors="replace"):
            return True
        if not alive:
            raise ExpectationFailed(
                f"{child.name} exited before logging {needle!r}; its log ends:\n{log_tail(child)}"
            )
        return False

    wait_for(
        logged,
        timeout,
        lambda: (
            f"{child.name} did not log {needle!r} within {timeout:g}s; its log ends:\n"
            f"{log_tail(child)}"
        ),
    )


def admin_ids(admins: Iterable[Any]) -> list[int]:
    """User ids from ids or objects with an ``id`` (simulated users)."""
    return [int(getattr(admin, "id", admin)) for admin in admins]
