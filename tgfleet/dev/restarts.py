"""When a supervised child process that exited is started again, and when to stop trying.

Pure arithmetic, no processes and no clock of its own: ``ProcessGroup`` (in
``processes.py``) tells a child's ``RestartBackoff`` how long the child ran each time
it exits and gets back a ``RestartDecision``.

* Exponential: the n-th quick exit in a row waits ``first_delay_s * factor**n``,
  capped at ``max_delay_s``.
* A child that ran at least ``stable_after_s`` before it exited was healthy: its
  count of quick exits starts over and it is started again after ``first_delay_s``.
* The ``give_up_after``-th quick exit in a row is the last: the child keeps dying at
  start (a bad argument, a port taken, a missing binary), and restarting it again would
  only hide that.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 30.0
    #: A run at least this long counts as healthy and resets the backoff.
    stable_after_s: float = 30.0
    #: Quick exits in a row (each within ``stable_after_s`` of its start) before giving up.
    give_up_after: int = 5

    def __post_init__(self) -> None:
        if self.first_delay_s < 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError("need 0 <= first_delay_s <= max_delay_s")
        if self.factor < 1 or self.give_up_after < 1 or self.stable_after_s <= 0:
            raise ValueError("need factor >= 1, give_up_after >= 1 and stable_after_s > 0")


class Verdict(StrEnum):
    RESTART = "restart"
    GIVE_UP = "give up"


@dataclass(frozen=True)
class RestartDecision:
    verdict: Verdict
    #: Seconds to wait before starting the child again (0 when giving up).
    delay_s: float
    #: Quick exits in a row, this one included (0 after a healthy run).
    quick_exits: int


class RestartBackoff:
    """One child's restart state: how many quick exits in a row it has had."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.quick_exits = 0

    def after_exit(self, ran_for_s: float) -> RestartDecision:
        """What to do about the child that exited after running ``ran_for_s`` seconds."""
        policy = self.policy
        if ran_for_s >= policy.stable_after_s:
            self.quick_exits = 0
            return RestartDecision(Verdict.RESTART, policy.first_delay_s, 0)
        self.quick_exits += 1
        if self.quick_exits >= policy.give_up_after:
            return RestartDecision(Verdict.GIVE_UP, 0.0, self.quick_exits)
        delay = min(policy.max_delay_s, policy.first_delay_s * policy.factor**self.quick_exits)
        return RestartDecision(Verdict.RESTART, delay, self.quick_exits)


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL``, ``exit code 1``: how a child's process ended, for people."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
