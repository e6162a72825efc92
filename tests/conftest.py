"""Shared fixtures: one real PostgreSQL + Redis pair for the whole test session.

The services are tgfleet's own embedded dev services (``tgfleet.platform.devservices``),
started under a temporary home so tests never touch a developer's ``.tgfleet/``.
Set TGFLEET_TEST_KEEP_SERVICES=1 to leave them running after the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tgfleet.platform.devservices import DevServices
from tgfleet.platform.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGFLEET_", "TG_"))}
    env.update(service_env)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env
