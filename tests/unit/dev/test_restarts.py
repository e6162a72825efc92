"""The supervisor's restart arithmetic: exponential and capped, reset by a healthy run,
given up after N quick exits in a row; and how exits and events read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tgfleet.dev.processes import ProcessEvent, ProcessEventKind
from tgfleet.dev.restarts import (
    RestartBackoff,
    RestartDecision,
    RestartPolicy,
    Verdict,
    describe_exit,
)

POLICY = RestartPolicy(
    first_delay_s=1.0, factor=2.0, max_delay_s=10.0, stable_after_s=30.0, give_up_after=6
)


def test_quick_exits_wait_exponentially_longer_up_to_the_cap() -> None:
    # Given a child that has not run long each time
    backoff = RestartBackoff(POLICY)
    # When it exits quickly five times in a row
    decisions = [backoff.after_exit(ran_for_s=2.0) for _ in range(5)]
    # Then each restart waits twice as long as the one before, never more than the cap
    assert [d.delay_s for d in decisions] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert [d.quick_exits for d in decisions] == [1, 2, 3, 4, 5]
    assert {d.verdict for d in decisions} == {Verdict.RESTART}


def test_a_healthy_run_resets_the_backoff() -> None:
    # Given a child that has exited quickly three times (the next wait would be 16 s)
    backoff = RestartBackoff(POLICY)
    for _ in range(3):
        backoff.after_exit(ran_for_s=1.0)
    # When it then runs longer than stable_after_s before exiting
    healthy = backoff.after_exit(ran_for_s=30.0)
    # Then it starts again after the first delay and the count of quick exits starts over
    assert healthy == RestartDecision(Verdict.RESTART, delay_s=1.0, quick_exits=0)
    assert backoff.after_exit(ran_for_s=1.0).delay_s == 2.0
    assert backoff.quick_exits == 1


def test_it_gives_up_at_the_nth_quick_exit_in_a_row_only() -> None:
    backoff = RestartBackoff(POLICY)
    # Given five quick exits, a healthy run, and five more quick exits
    for _ in range(5):
        assert backoff.after_exit(ran_for_s=0.1).verdict is Verdict.RESTART
    backoff.after_exit(ran_for_s=45.0)
    for _ in range(5):
        assert backoff.after_exit(ran_for_s=0.1).verdict is Verdict.RESTART
    # When the sixth quick exit in a row comes
    last = backoff.after_exit(ran_for_s=0.1)
    # Then it gives up, saying after how many
    assert last.verdict is Verdict.GIVE_UP
    assert last.quick_exits == 6
    assert last.delay_s == 0.0


def test_give_up_after_one_means_no_restart_after_a_quick_exit() -> None:
    backoff = RestartBackoff(RestartPolicy(give_up_after=1, stable_after_s=5.0))
    assert backoff.after_exit(ran_for_s=10.0).verdict is Verdict.RESTART
    assert backoff.after_exit(ran_for_s=1.0).verdict is Verdict.GIVE_UP


@pytest.mark.parametrize(
    "bad",
    [
        {"first_delay_s": -1.0},
        {"first_delay_s": 5.0, "max_delay_s": 1.0},
        {"factor": 0.5},
        {"give_up_after": 0},
        {"stable_after_s": 0.0},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**bad)


@pytest.mark.parametrize(
    ("returncode", "said"),
    [(-9, "killed by SIGKILL"), (-15, "killed by SIGTERM"), (1, "exit code 1"), (0, "exit code 0")],
)
def test_how_a_process_ended_reads(returncode: int, said: str) -> None:
    assert describe_exit(returncode) == said


def test_the_events_say_what_happened_and_giving_up_says_where_to_look() -> None:
    exited = ProcessEvent(ProcessEventKind.EXITED, "worker", "killed by SIGKILL", 35.2, 0.5)
    assert exited.describe() == (
        "worker stopped (killed by SIGKILL) after 35 s: starting it again in 0.5 s"
    )
    restarted = ProcessEvent(ProcessEventKind.RESTARTED, "worker", "", 0.0, restarts=2, pid=42)
    assert restarted.describe() == "worker started again (pid 42, restart 2)"
    gave_up = ProcessEvent(
        ProcessEventKind.GAVE_UP,
        "flower",
        "exit code 2",
        0.3,
        quick_exits=5,
        log_path=Path("/logs/flower.log"),
    )
    assert gave_up.describe(POLICY) == (
        "flower keeps stopping: 5 times in a row within 30 s of starting "
        "(last: exit code 2); not starting it again (see /logs/flower.log)"
    )
