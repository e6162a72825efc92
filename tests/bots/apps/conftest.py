"""The built-in apps are tested with the testing kit on the session's services."""

from tests.support.kit import *  # noqa: F403  (the kit's fixtures)
