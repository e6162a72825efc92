"""The unit layer's promise: pure logic only, no PostgreSQL, Redis, simulator or worker.

* The fixtures every test can ask for (``tests/conftest.py`` and the ``tests/support``
  modules it registers as plugins) start or need services, all but a few; here each such
  one is replaced by one that fails the test at once, naming the fixture and what to do
  instead (``test_conftest.py`` checks that none is missed).
* A socket connection fails the test at once too, so a test that reaches a service by
  itself (a Redis client, a database engine) is caught the first time it runs.
* ``make_settings(**overrides)`` builds a real ``Settings`` from explicit values with dummy
  URLs, ignoring the environment and any ``.env`` file; building it opens no connection.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable
from typing import Any, NoReturn

import pytest

from tgfleet.platform.settings import Settings, load_settings

#: Shared fixtures that start or need a service (PostgreSQL, Redis, the simulator, workers).
SERVICE_FIXTURES = (
    # tests/conftest.py
    "dev_services",
    "service_env",
    "settings",
    "subprocess_env",
    "start_worker",
    "start_beat",
    "migrated",
    "simulator",
    "sim_settings",
    "sim_env",
    "make_bot",
    "start_listener",
    # tests/support/databases.py
    "make_database",
    "db_settings",
    "owner_engine",
    "make_bots",
    "ops_redis",
    "ops_db",
    "ops_owner",
    "make_ops_bot",
    "ops_app_factory",
    # tests/support/legacy.py
    "legacy_settings",
    "legacy_owner",
    "clean_db",
    "legacy_env",
    # tests/support/running.py
    "run_app",
)
#: Shared fixtures that need no service, which unit tests may use.
PURE_SHARED_FIXTURES = ("make_store",)

#: Required variables with values that point nowhere (``.invalid`` never resolves).
DUMMY_ENV = {
    "DATABASE_URL": "postgresql://unit:unitpassword@db.invalid:5432/tgfleet",
    "REDIS_URL": "redis://redis.invalid:6379/0",
    "TGFLEET_SECRET_KEY": base64.urlsafe_b64encode(b"unit-test-secret-key-32-bytes!!!").decode(),
    "TG_API_ID": "12345",
    "TG_API_HASH": "0123456789abcdef0123456789abcdef",
    "TGFLEET_NODE_NAME": "unit-node",
}


def _refusal(name: str) -> Any:
    @pytest.fixture(name=name)
    def refuse() -> NoReturn:
        pytest.fail(
            f"tests/unit is the no-services layer, but this test asked for the {name!r} "
            "fixture. Build Settings with the make_settings(**overrides) fixture, or move "
            "the test to the behaviour tests beside the package it covers (tests/<area>/).",
            pytrace=False,
        )

    return refuse


for _name in SERVICE_FIXTURES:
    globals()[f"refuse_{_name}"] = _refusal(_name)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection fails the test (Failed is not an Exception: no handler in the
    code under test can swallow it as a network error)."""

    def refuse(self: socket.socket, address: Any) -> NoReturn:
        pytest.fail(f"a unit test tried to connect to {address!r}; unit tests use no services")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for info in Settings.model_fields.values():
        if info.alias:
            monkeypatch.delenv(info.alias, raising=False)


@pytest.fixture
def hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable Settings reads is left in the environment (pass ``_env_file=None`` to
    ``load_settings`` too, so a developer's ``.env`` is not read either)."""
    _clear_settings_env(monkeypatch)


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Factory: ``make_settings(TGFLEET_RATE_BOT_PER_S="10")`` -> Settings from DUMMY_ENV and
    the overrides only (environment variables and ``.env`` are ignored)."""

    def make(**overrides: Any) -> Settings:
        _clear_settings_env(monkeypatch)
        return load_settings(_env_file=None, **{**DUMMY_ENV, **overrides})

    return make
