"""A supervised ProcessGroup starts a child that died again, and gives up on one that
keeps dying at start, saying so; an unsupervised group leaves a dead child dead."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_until
from tgfleet.dev.host import pid_alive
from tgfleet.dev.processes import Child, ProcessEventKind, ProcessGroup
from tgfleet.dev.restarts import RestartPolicy

#: Fast enough for a test: 0.1 s, 0.2 s, ... after quick exits; a 2 s run is healthy.
FAST = RestartPolicy(
    first_delay_s=0.05, factor=2.0, max_delay_s=1.0, stable_after_s=2.0, give_up_after=3
)

#: A child that starts a grandchild in its own process group (as a Celery worker starts
#: its pool), appends "<pid> <grandchild pid>" to a file, and sleeps.
SLEEPER = textwrap.dedent(
    """
    import subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(sys.argv[1], "a") as out:
        out.write(f"{__import__('os').getpid()} {grandchild.pid}\\n")
    print("started", flush=True)
    time.sleep(120)
    """
)


def pids(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in path.read_text().splitlines())]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path / "logs", dict(os.environ), restart=FAST, poll_s=0.05)
    yield group
    group.stop(timeout=5)


def test_a_killed_child_is_started_again(group: ProcessGroup, tmp_path: Path) -> None:
    # Given a supervised child that wrote its pid (and its grandchild's)
    record = tmp_path / "pids"
    child = group.start("sleeper", [sys.executable, "-c", SLEEPER, str(record)])
    wait_until(lambda: len(pids(record)) == 1, 30, "the first pid")
    (first, grandchild) = pids(record)[0]
    assert child.process.pid == first
    # When it is SIGKILLed
    os.kill(first, signal.SIGKILL)
    # Then a new process takes its place, under the same name and log
    wait_until(lambda: len(pids(record)) == 2, 30, "a second pid", detail=lambda: log(child))
    (second, _) = pids(record)[1]
    assert second != first
    wait_until(lambda: child.alive and child.process.pid == second, 10, "the new process")
    assert child.restarts == 1
    assert group.children == [child]
    # And what it left of its process group went with it
    wait_until(lambda: not pid_alive(grandchild), 10, "the orphaned grandchild to be gone")
    # And the supervisor said what it did: an exit with how, then a restart with the new pid
    events = group.take_events()
    assert [e.kind for e in events] == [ProcessEventKind.EXITED, ProcessEventKind.RESTARTED]
    assert events[0].how == "killed by SIGKILL"
    assert events[0].delay_s == pytest.approx(0.1)  # a quick exit: first_delay * factor
    assert events[1].pid == second
    assert events[1].restarts == 1
    assert "sleeper stopped (killed by SIGKILL)" in log(child)
    assert log(child).count("started\n") == 2  # both runs write to the same log
    assert not group.given_up()


def test_a_child_that_keeps_dying_at_start_is_given_up(group: ProcessGroup) -> None:
    # Given a supervised child that exits at once, every time
    child = group.start("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"])
    # When it has exited give_up_after (3) times in a row within stable_after_s
    wait_until(lambda: group.given_up(), 30, "the supervisor to give up", detail=lambda: log(child))
    # Then it was started again twice, with a growing wait, and not again after that
    assert group.given_up() == [child]
    assert child.restarts == 2
    events = group.take_events()
    kinds = [e.kind for e in events]
    assert kinds == [
        ProcessEventKind.EXITED,
        ProcessEventKind.RESTARTED,
        ProcessEventKind.EXITED,
        ProcessEventKind.RESTARTED,
        ProcessEventKind.GAVE_UP,
    ]
    assert [e.delay_s for e in events if e.kind is ProcessEventKind.EXITED] == [
        pytest.approx(0.1),
        pytest.approx(0.2),
    ]
    # And it says so clearly: which process, how often, how it ended, where the log is
    message = events[-1].describe(group.restart)
    assert message == (
        f"crasher keeps stopping: 3 times in a row within 2 s of starting "
        f"(last: exit code 3); not starting it again (see {child.log_path})"
    )
    assert "not starting it again" in log(child)
    # A quiet period: nothing signals "no more restarts will come"
    time.sleep(0.5)
    assert child.restarts == 2 and not child.alive and group.take_events() == []


def test_a_child_whose_command_is_gone_is_given_up_saying_why(
    group: ProcessGroup, tmp_path: Path
) -> None:
    # Given a supervised child started from a script that is then deleted
    script = tmp_path / "serve.sh"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    child = group.start("server", [str(script)])
    script.unlink()
    # When it is killed (every start from now on fails)
    os.kill(child.process.pid, signal.SIGKILL)
    # Then failed starts count as quick exits, and the supervisor gives up saying why
    wait_until(lambda: group.given_up(), 30, "the supervisor to give up", detail=lambda: log(child))
    (gave_up,) = [e for e in group.take_events() if e.kind is ProcessEventKind.GAVE_UP]
    assert gave_up.how.startswith("could not start: [Errno 2]")
    assert child.restarts == 0


def test_a_child_that_ran_a_while_is_never_given_up(tmp_path: Path) -> None:
    # Given a child that exits after running longer than stable_after_s (0.5 s) each time
    steady = RestartPolicy(first_delay_s=0.05, stable_after_s=0.5, give_up_after=2)
    with ProcessGroup(tmp_path / "logs", dict(os.environ), restart=steady, poll_s=0.05) as group:
        argv = [sys.executable, "-c", "import time; time.sleep(0.7)"]
        child = group.start("steady", argv)
        # When it has exited more often than give_up_after (2)
        wait_until(lambda: child.restarts >= 3, 30, "three restarts", detail=lambda: log(child))
        # Then each restart came after the first delay, and the supervisor never gave up
        exits = [e for e in group.take_events() if e.kind is ProcessEventKind.EXITED]
        assert [e.delay_s for e in exits][:3] == [0.05] * 3
        assert [e.quick_exits for e in exits][:3] == [0] * 3
        assert all(e.ran_for_s >= 0.5 for e in exits)
        assert not group.given_up()


def test_without_a_policy_a_dead_child_stays_dead(tmp_path: Path) -> None:
    # Given an unsupervised group (as the tests' own fixtures make)
    with ProcessGroup(tmp_path / "logs", dict(os.environ)) as group:
        child = group.start("once", [sys.executable, "-c", "import time; time.sleep(60)"])
        # When its child is SIGKILLed
        os.kill(child.process.pid, signal.SIGKILL)
        wait_until(lambda: not child.alive, 10, "the child to die")
        # Then nothing starts it again (a quiet period: nothing signals "no restart comes")
        time.sleep(0.5)
        assert group.dead() == [child]
        assert child.restarts == 0 and group.take_events() == []


def log(child: Child) -> str:
    return child.log_path.read_text(errors="replace")
