"""End to end through the Celery tasks: ``send_world`` gives the send tasks a simulator,
bots, users and real sender workers (``tests/support/sends``)."""

from tests.support.sends import send_world

__all__ = ["send_world"]
