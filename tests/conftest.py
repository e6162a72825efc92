"""Shared fixtures: one real PostgreSQL + Redis pair for the whole test session (for
each pytest process: ``make test`` runs two, each with services of its own), the
Telegram simulator, and real child processes (workers, beat, listeners) on them.

The services are tgfleet's own embedded dev services (``tgfleet.dev.services``),
started under a temporary home so tests never touch a developer's ``.tgfleet/``.
Set TGFLEET_TEST_KEEP_SERVICES=1 to leave them running after the session.

Every other shared fixture and helper lives in ``tests/support/``; the fixture modules
there are registered below.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO_ROOT
from tests.support.waiting import wait_for_log
from tgfleet.dev.processes import Child, ProcessGroup, child_environ
from tgfleet.dev.services import DevServices
from tgfleet.platform.settings import Settings, load_settings

pytest_plugins = ["tests.support.databases", "tests.support.legacy", "tests.support.running"]


@pytest.fixture(scope="session")
def dev_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServices]:
    """Given a running local PostgreSQL and Redis (started once per session)."""
    home = tmp_path_factory.mktemp("tgfleet-home")
    services = DevServices(home)
    services.up()
    yield services
    if not os.environ.get("TGFLEET_TEST_KEEP_SERVICES"):
        services.down()


@pytest.fixture(scope="session")
def service_env(dev_services: DevServices) -> dict[str, str]:
    """Environment variables pointing tgfleet at the session's services."""
    return dev_services.env()


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]) -> Settings:
    return load_settings(**service_env)


@pytest.fixture
def subprocess_env(service_env: dict[str, str]) -> dict[str, str]:
    """A full environment for child processes (workers, CLI) with the services set."""
    # Tests read Celery's per-task lines ("... succeeded in ...s: <result>") in worker logs.
    return child_environ(service_env, {"PYTHONPATH": str(REPO_ROOT), "TGFLEET_LOG_TASKS": "true"})


@pytest.fixture
def start_worker(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Factory: start a real ``celery -A tgfleet worker`` subprocess; all stop at teardown.

    ``start_worker(queues="maintenance", concurrency=2, pool="prefork")`` returns
    once the worker logged that it is ready (``wait=False``: at once, to start several
    side by side; ``wait_for_log(child, "ready.", ...)`` then).
    """
    group = ProcessGroup(tmp_path / "worker-logs", subprocess_env)
    counter = 0

    def start(
        queues: str = "maintenance",
        concurrency: int = 1,
        pool: str = "prefork",
        extra_env: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
        wait: bool = True,
    ) -> Child:
        nonlocal counter
        counter += 1
        child = group.celery(
            f"worker{counter}",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-n",
            f"test{counter}-{os.getpid()}@%h",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            extra_env=extra_env,
        )
        if wait:
            wait_for_log(child, "ready.", ready_timeout)
        return child

    yield start
    group.stop()


@pytest.fixture
def start_beat(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Factory: a real ``celery -A tgfleet beat`` subprocess; stopped at teardown."""
    group = ProcessGroup(tmp_path / "beat-logs", subprocess_env)

    def start(extra_env: dict[str, str] | None = None) -> Child:
        return group.celery(
            f"beat{len(group.children) + 1}",
            "beat",
            "--schedule",
            str(tmp_path / f"beat-schedule-{len(group.children)}"),
            "--loglevel",
            "INFO",
            extra_env=extra_env,
        )

    yield start
    group.stop()


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> Settings:
    """Given the session's database migrated to head (shared; tests use their own bots)."""
    from tgfleet.db import upgrade_database

    upgrade_database(settings)
    return settings


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Telegram simulator (real MTProto server) for the session, with limits on."""
    from tgfleet.simulator import SimulatorThread

    with SimulatorThread() as sim:
        sim.key_file = sim.write_rsa_key(tmp_path_factory.mktemp("sim") / "server.pem")
        yield sim


@pytest.fixture(scope="session")
def sim_settings(migrated: Settings, simulator: Any) -> Settings:
    """Settings pointing tgfleet's Telegram clients at the simulator."""
    return migrated.model_copy(
        update={
            "tg_server": f"{simulator.host}:{simulator.port}",
            "tg_server_rsa_key_file": simulator.key_file,
        }
    )


@pytest.fixture
def sim_env(subprocess_env: dict[str, str], simulator: Any, migrated: Settings) -> dict[str, str]:
    """Child-process environment with the services and the simulator."""
    return {
        **subprocess_env,
        "TG_SERVER": f"{simulator.host}:{simulator.port}",
        "TG_SERVER_RSA_KEY_FILE": str(simulator.key_file),
    }


@pytest.fixture
def make_bot(sim_settings: Settings, simulator: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Factory: a bot in the simulator and in the fleet; removed from the fleet afterwards.

    ``make_bot(app="echo", admins=[user_id])`` returns the simulator's bot dict.
    """
    from tgfleet.db import fleet

    made: list[int] = []

    def make(app: str | None = None, admins: list[int] | None = None) -> dict[str, Any]:
        bot = simulator.create_bot()
        fleet.save_bot(
            sim_settings,
            bot["token"],
            name=bot.get("username") or "bot",
            admin_chat_ids=admins or [],
            app=app,
        )
        made.append(int(bot["id"]))
        return dict(bot)

    yield make
    for bot_id in made:
        with contextlib.suppress(Exception):
            fleet.remove_bot(sim_settings, bot_id)


@pytest.fixture
def start_listener(sim_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Factory: a real ``tgfleet listen`` subprocess; all stopped at teardown."""
    group = ProcessGroup(tmp_path / "listener-logs", sim_env)
    counter = 0

    def start(bots: list[int] | None = None, lease_ttl: float = 10.0) -> Child:
        nonlocal counter
        counter += 1
        ids = ",".join(map(str, bots)) if bots else "all"
        return group.start(
            f"listener{counter}",
            [
                sys.executable,
                "-m",
                "tgfleet",
                "listen",
                "--bots",
                ids,
                "--lease-ttl",
                str(lease_ttl),
            ],
        )

    yield start
    group.stop()
