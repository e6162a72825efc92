"""The unit layer keeps its promise: no service fixture, no connection, hermetic Settings."""

from __future__ import annotations

import ast
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import DUMMY_ENV, PURE_SHARED_FIXTURES, SERVICE_FIXTURES
from tgfleet.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def fixtures_defined_in(path: Path) -> set[str]:
    """Names of the functions decorated with ``@pytest.fixture`` in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if ast.unparse(target) == "pytest.fixture":
                    found.add(node.name)
    return found


def shared_fixture_files() -> list[Path]:
    """tests/conftest.py and the modules it registers with ``pytest_plugins``."""
    conftest = ROOT / "tests" / "conftest.py"
    plugins: list[str] = []
    for node in ast.parse(conftest.read_text()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "pytest_plugins":
            plugins = list(ast.literal_eval(node.value))
    return [conftest, *(ROOT.joinpath(*name.split(".")).with_suffix(".py") for name in plugins)]


def test_every_shared_fixture_is_refused_or_known_pure() -> None:
    # Given the fixtures every test may ask for
    files = shared_fixture_files()
    shared = set().union(*(fixtures_defined_in(path) for path in files))
    assert "settings" in shared, "the parser found no fixture at all"
    # Then the unit layer refuses each of them, but those known to need no service
    unknown = shared - set(SERVICE_FIXTURES) - set(PURE_SHARED_FIXTURES)
    assert not unknown, (
        "shared fixtures unknown to tests/unit/conftest.py (add each to SERVICE_FIXTURES, or "
        f"to PURE_SHARED_FIXTURES if it needs no service): {sorted(unknown)}"
    )


@pytest.mark.parametrize("name", SERVICE_FIXTURES)
def test_asking_for_a_service_fixture_fails_at_once(
    request: pytest.FixtureRequest, name: str
) -> None:
    # When a unit test asks for a service fixture, Then it fails naming it and the way out
    with pytest.raises(pytest.fail.Exception, match=rf"asked for the '{name}' fixture.*make_"):
        request.getfixturevalue(name)


def test_a_connection_attempt_fails_the_test() -> None:
    # Given a socket, When it connects anywhere, Then the test fails (not an OSError that
    # the code under test could take for a network outage)
    with (
        socket.socket() as sock,
        pytest.raises(pytest.fail.Exception, match="tried to connect"),
    ):
        sock.connect(("127.0.0.1", 9))


def test_settings_ignore_the_environment(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    # Given a developer shell exporting its own values
    monkeypatch.setenv("TGFLEET_RATE_BOT_PER_S", "5")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    # When unit settings are built, Then only the dummy values and overrides count
    settings = make_settings(TGFLEET_RATE_CHAT_BURST="7")
    assert settings.rate_bot_per_s == 30.0
    assert settings.redis_url == DUMMY_ENV["REDIS_URL"]
    assert settings.rate_chat_burst == 7
