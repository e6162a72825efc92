"""The pytest fixtures of ``tgfleet.testing`` (see the package's docstring).

Once per session: the embedded PostgreSQL and Redis under a temporary home, migrated
(``tgfleet_services``, ``tgfleet_settings``), and the Telegram simulator
(``tgfleet_simulator``). Per test: the bots and their processes (``tgfleet_fleet``,
started through ``tgfleet_bot``) and simulated users (``tgfleet_user``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Protocol

import pytest

from tgfleet.db import upgrade_database
from tgfleet.dev.processes import child_environ
from tgfleet.dev.services import DevServices
from tgfleet.platform.settings import Settings, load_settings
from tgfleet.simulator import SimulatorThread
from tgfleet.testing.fleet import LocalFleet, RunningBot, admin_ids
from tgfleet.testing.user import DEFAULT_TIMEOUT_S, SimulatedUser


class BotFactory(Protocol):
    """``tgfleet_bot(app="mybot.app:router", admins=[boss])``."""

    def __call__(
        self,
        app: str,
        admins: Iterable[int | SimulatedUser] = (),
        username: str | None = None,
    ) -> RunningBot: ...


class UserFactory(Protocol):
    """``tgfleet_user("Ann")``."""

    def __call__(
        self,
        first_name: str = "Ann",
        *,
        last_name: str | None = None,
        username: str | None = None,
        lang_code: str | None = None,
        bot: RunningBot | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> SimulatedUser: ...


@pytest.fixture(scope="session")
def tgfleet_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServices]:
    """A PostgreSQL and a Redis of the session's own, under a temporary home."""
    services = DevServices(tmp_path_factory.mktemp("tgfleet-services"))
    services.up()
    try:
        yield services
    finally:
        services.down()


@pytest.fixture(scope="session")
def tgfleet_simulator() -> Iterator[SimulatorThread]:
    """The Telegram simulator (a real MTProto server), Telegram's flood limits on."""
    with SimulatorThread() as simulator:
        yield simulator


@pytest.fixture(scope="session")
def tgfleet_settings(
    tgfleet_services: DevServices,
    tgfleet_simulator: SimulatorThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """Settings for the session's services (migrated to head) and the simulator."""
    key = tgfleet_simulator.write_rsa_key(tmp_path_factory.mktemp("tgfleet-sim") / "sim.pem")
    settings = load_settings(**tgfleet_services.env()).model_copy(
        update={
            "tg_server": f"{tgfleet_simulator.host}:{tgfleet_simulator.port}",
            "tg_server_rsa_key_file": key,
        }
    )
    upgrade_database(settings)
    return settings


@pytest.fixture(scope="session")
def tgfleet_env(
    request: pytest.FixtureRequest,
    tgfleet_services: DevServices,
    tgfleet_settings: Settings,
) -> dict[str, str]:
    """The environment of the bots' processes: the services, the simulator, and the
    project's root (pytest's rootdir) on PYTHONPATH so they can import its apps."""
    paths = [str(request.config.rootpath), os.environ.get("PYTHONPATH", "")]
    return child_environ(
        tgfleet_services.env(),
        {
            "TG_SERVER": str(tgfleet_settings.tg_server),
            "TG_SERVER_RSA_KEY_FILE": str(tgfleet_settings.tg_server_rsa_key_file),
            "PYTHONPATH": os.pathsep.join(path for path in paths if path),
        },
    )


@pytest.fixture
def tgfleet_fleet(
    request: pytest.FixtureRequest,
    tgfleet_simulator: SimulatorThread,
    tgfleet_settings: Settings,
    tgfleet_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalFleet]:
    """The test's bots and their processes; all stopped and removed at teardown."""
    local = LocalFleet(
        tgfleet_simulator,
        tgfleet_settings,
        tgfleet_env,
        tmp_path_factory.mktemp("tgfleet-logs"),
        request.config.rootpath,
    )
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def tgfleet_bot(tgfleet_fleet: LocalFleet) -> BotFactory:
    """Factory: ``tgfleet_bot(app="mybot.app:router", admins=[...])`` starts a bot running
    that app, with a real listener, update worker and sender worker; returns once they
    are ready. Everything stops at the end of the test."""

    def start(
        app: str, admins: Iterable[int | SimulatedUser] = (), username: str | None = None
    ) -> RunningBot:
        __tracebackhide__ = True
        return tgfleet_fleet.start_bot(app, admin_ids(admins), username)

    return start


@pytest.fixture
def tgfleet_user(tgfleet_simulator: SimulatorThread, tgfleet_fleet: LocalFleet) -> UserFactory:
    """Factory: ``tgfleet_user("Ann")`` is a new simulated user who talks to the test's
    bot (or ``bot=``); waits last ``timeout`` seconds at most. ``lang_code`` is the
    language of the user's Telegram app (``tgfleet_user("Olga", lang_code="ru")``)."""

    def make(
        first_name: str = "Ann",
        *,
        last_name: str | None = None,
        username: str | None = None,
        lang_code: str | None = None,
        bot: RunningBot | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> SimulatedUser:
        info = tgfleet_simulator.create_user(first_name, last_name, username, lang_code)
        return SimulatedUser(tgfleet_simulator, tgfleet_fleet, info, bot, timeout)

    return make
