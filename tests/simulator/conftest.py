"""The simulator's tests get a simulator of their own per test (``tests/support/simulator``)."""

from tests.support.simulator import run, sim, world

__all__ = ["run", "sim", "world"]
