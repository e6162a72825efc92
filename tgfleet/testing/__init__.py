"""A testing kit for bot authors: a pytest plugin that runs your app on the real thing.

Enable it in your project's top ``conftest.py`` (it is opt-in, not an entry point)::

    pytest_plugins = ["tgfleet.testing"]

and test your bot as a user would use it::

    def test_start(tgfleet_bot, tgfleet_user):
        tgfleet_bot(app="mybot.app:router")
        ann = tgfleet_user("Ann")
        ann.send("/start")
        menu = ann.expect_reply("Pick one", keyboard=[["Like", "Skip"]])
        assert ann.press("Like").text == "Liked!"
        ann.expect_edit(menu, "You liked it", keyboard=[])

What runs: tgfleet's embedded PostgreSQL and Redis (once per session, under a temporary
home, migrated), the Telegram simulator (a real MTProto server), and per test, for each
bot, a real ``tgfleet listen`` plus an update worker and a sender worker (``celery -A
tgfleet worker``) as child processes, with your project's root (pytest's rootdir) on
their PYTHONPATH. It needs ``tgfleet[embedded]`` and pytest.

Fixtures (all prefixed ``tgfleet_``; factories clean up after the test):

* ``tgfleet_bot(app, admins=(), username=None) -> RunningBot``
* ``tgfleet_user(first_name="Ann", *, last_name, username, bot, timeout) -> SimulatedUser``:
  ``send(text)``, ``press(label, message=None)``, ``expect_reply(text, contains=,
  keyboard=)``, ``expect_edit(message, ...)``, ``expect_deleted(message)``,
  ``replies()``, ``last_message()``, ``block()``, ``unblock()``
* session-wide: ``tgfleet_services``, ``tgfleet_simulator``, ``tgfleet_settings``,
  ``tgfleet_env``; per test: ``tgfleet_fleet``

Every ``expect_*`` waits up to a deadline and fails with an ``ExpectationFailed`` that
says what was expected, what arrived, and the errors the bot's processes logged.
"""

from tgfleet.testing.fixtures import (
    BotFactory,
    UserFactory,
    tgfleet_bot,
    tgfleet_env,
    tgfleet_fleet,
    tgfleet_services,
    tgfleet_settings,
    tgfleet_simulator,
    tgfleet_user,
)
from tgfleet.testing.fleet import LocalFleet, RunningBot
from tgfleet.testing.messages import Answer, Received
from tgfleet.testing.user import SimulatedUser
from tgfleet.testing.waiting import ExpectationFailed

__all__ = [
    "Answer",
    "BotFactory",
    "ExpectationFailed",
    "LocalFleet",
    "Received",
    "RunningBot",
    "SimulatedUser",
    "UserFactory",
    "tgfleet_bot",
    "tgfleet_env",
    "tgfleet_fleet",
    "tgfleet_services",
    "tgfleet_settings",
    "tgfleet_simulator",
    "tgfleet_user",
]
