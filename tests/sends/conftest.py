"""The send path's code, called directly: ``bot_id`` is a bot in the database with an empty
``sends`` queue (``tests/support/sends``)."""

from tests.support.sends import bot_id

__all__ = ["bot_id"]
