"""The ops tests that run a bot use the testing kit on the session's services."""

from tests.support.kit import *  # noqa: F403  (the kit's fixtures)
