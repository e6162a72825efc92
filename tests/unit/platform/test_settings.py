"""Settings: every missing or invalid variable is named, with what a good value looks like,
and secret values are never echoed (in-process; tests/platform/test_settings.py runs the
real CLI for the exit code)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tgfleet.platform.errors import ConfigError
from tgfleet.platform.settings import Settings, load_settings, settings_or_exit

GOOD = {
    "DATABASE_URL": "postgresql://app:dbsecretpw@127.0.0.1:5432/tgfleet",
    "REDIS_URL": "redis://:redissecretpw@127.0.0.1:6379/0",
    "TGFLEET_SECRET_KEY": "x3o8lJmQ0uA3s9pZcQY1Y7wQ7j0l0p3i0kzqf1VZbq4=",
    "TG_API_ID": "12345",
    "TG_API_HASH": "0123456789abcdef0123456789abcdef",
}
SECRETS = ("dbsecretpw", "redissecretpw", "x3o8lJmQ0uA3s9pZ", "0123456789abcdef01")


@pytest.fixture(autouse=True)
def _hermetic(hermetic_env: None) -> None:
    """No variable of the developer's shell reaches these Settings."""


def load(**env: str) -> Settings:
    return load_settings(_env_file=None, **env)


def problem(**env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**env)
    return str(caught.value)


def test_good_settings_load() -> None:
    # Given every required variable, When Settings load, Then the rest take their defaults
    settings = load(**GOOD)
    assert settings.tg_api_id == 12345
    assert settings.role("bot") == "tgfleet_bot"
    assert settings.owner_database_url == GOOD["DATABASE_URL"]
    assert settings.tg_server_address is None


@pytest.mark.parametrize(
    ("variable", "example"),
    [
        ("DATABASE_URL", "postgresql://user:password@127.0.0.1:5432/tgfleet"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("TGFLEET_SECRET_KEY", "Fernet.generate_key()"),
        ("TG_API_ID", "e.g. 123456"),
        ("TG_API_HASH", "32-character hex api_hash"),
    ],
)
def test_a_missing_variable_is_named_with_an_example(variable: str, example: str) -> None:
    # Given every required variable but one
    env = {k: v for k, v in GOOD.items() if k != variable}
    # When Settings load, Then one problem names it and shows a good value
    message = problem(**env)
    assert message.startswith(f"{variable} is not set; expected ")
    assert example in message
    assert message.count(" is not set") == 1
    for secret in SECRETS:
        assert secret not in message


@pytest.mark.parametrize(
    ("variable", "bad", "expect"),
    [
        ("DATABASE_URL", "mysql://root:dbsecretpw@db/x", "must be a postgresql:// URL; expected"),
        ("MIGRATE_DATABASE_URL", "sqlite:///dbsecretpw", "expected postgresql://owner:"),
        ("REDIS_URL", "http://redissecretpw@x", "must be a redis:// URL; expected redis://"),
        ("TGFLEET_RESULT_BACKEND", "rpc://redissecretpw", "(or leave unset)"),
        ("TGFLEET_SECRET_KEY", "not-a-key-x3o8lJmQ0uA3s9pZ", "not url-safe base64; expected"),
        ("TGFLEET_SECRET_KEY", "eDNvOGxKbVEwdUEzczlwWg==", "exactly 32 bytes; expected a Fernet"),
        ("TG_API_HASH", "0123456789abcdef01", "32 hexadecimal characters; expected"),
        ("TGFLEET_FLOWER_PASSWORD", "x3o8lJmQ0uA3s9pZ,x", "no comma; expected 8+ characters"),
    ],
)
def test_an_invalid_secret_is_named_but_not_echoed(variable: str, bad: str, expect: str) -> None:
    # Given one invalid value of a variable whose values are secret
    message = problem(**{**GOOD, variable: bad})
    # Then the message names the variable and a good value, and never shows the value
    assert message.startswith(variable + " ")
    assert expect in message
    assert "got" not in message
    for secret in SECRETS:
        assert secret not in message


@pytest.mark.parametrize(
    ("variable", "bad", "expect"),
    [
        ("TG_API_ID", "abc", "valid integer"),
        ("TG_API_ID", "-5", "greater than 0"),
        ("TG_SERVER", "localhost", "must be host:port"),
        ("TG_SERVER", "10.0.0.1:70000", "must be host:port"),
        ("TG_SERVER_DC", "9", "less than or equal to 5"),
        ("TGFLEET_LOG_FORMAT", "xml", "'plain' or 'json'"),
        ("TGFLEET_FLOWER_USER", "ad:min", "without ',' or ':'"),
        ("TGFLEET_NODE_NAME", "my node", "is not in the expected form"),
        ("TGFLEET_VISIBILITY_TIMEOUT_S", "10", "greater than or equal to 600"),
        ("TGFLEET_RATE_BOT_PER_S", "0", "greater than 0"),
        ("TGFLEET_SEND_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
    ],
)
def test_an_invalid_value_is_named_and_shown(variable: str, bad: str, expect: str) -> None:
    # Given one invalid value of a variable that is not secret
    message = problem(**{**GOOD, variable: bad})
    # Then the message names the variable, the rule, and the value it got
    assert message.startswith(variable + " ")
    assert expect in message
    assert f"(got {bad!r})" in message


@pytest.mark.parametrize(
    ("variable", "bad", "example"),
    [
        ("TG_API_ID", "twelve", "e.g. 123456"),
        ("TG_SERVER", "no port", "e.g. 149.154.167.40:443"),
        ("TG_SERVER_DC", "0", "a DC id from 1 to 5"),
        ("TGFLEET_LOG_FORMAT", "text", "plain or json"),
        ("TGFLEET_FLOWER_USER", "a,b", "e.g. admin"),
        ("TGFLEET_NODE_NAME", "a/b", "e.g. sender-1"),
    ],
)
def test_variables_with_a_format_show_an_example(variable: str, bad: str, example: str) -> None:
    # Given a value of the wrong shape, Then after the rule comes a good value
    message = problem(**{**GOOD, variable: bad})
    assert message.startswith(variable + " ")
    assert example in message.split("; expected ", 1)[1]


@pytest.mark.parametrize("variable", ["TGFLEET_LOG_LEVEL", "TGFLEET_DB_ROLE_PREFIX"])
def test_pattern_checked_variables_show_an_example(variable: str) -> None:
    message = problem(**{**GOOD, variable: "Not Valid!"})
    assert "pattern" not in message and "expected" in message


def test_every_problem_is_reported_at_once() -> None:
    # Given two missing variables and one invalid
    env = {k: v for k, v in GOOD.items() if k not in ("REDIS_URL", "TG_API_HASH")}
    # When Settings load, Then all three are reported, one clause each
    message = problem(**{**env, "TG_SERVER_DC": "0"})
    clauses = [c for c in message.split("; ") if not c.startswith("expected")]
    assert [c.split(" ", 1)[0] for c in clauses] == ["REDIS_URL", "TG_API_HASH", "TG_SERVER_DC"]


def test_settings_or_exit_stops_with_code_2_and_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a missing variable, When an entry point builds its settings
    env = {k: v for k, v in GOOD.items() if k != "REDIS_URL"}
    with pytest.raises(SystemExit) as caught:
        settings_or_exit(_env_file=None, **env)
    # Then it exits 2 with one line on stderr naming the variable
    assert caught.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tgfleet: configuration error: REDIS_URL")


@pytest.mark.parametrize(
    ("server", "address"),
    [
        ("149.154.167.40:443", ("149.154.167.40", 443)),
        ("sim.local:8443", ("sim.local", 8443)),
        ("[::1]:443", ("[::1]", 443)),
        ("", None),
    ],
)
def test_tg_server_is_split_into_host_and_port(
    server: str, address: tuple[str, int] | None
) -> None:
    assert load(**GOOD, TG_SERVER=server).tg_server_address == address


def test_migrations_use_the_owner_url_when_set(make_settings: Callable[..., Settings]) -> None:
    owner = "postgresql://owner:pw@127.0.0.1:5432/tgfleet"
    assert make_settings(MIGRATE_DATABASE_URL=owner).owner_database_url == owner
    assert make_settings(TGFLEET_DB_ROLE_PREFIX="fleet2").role("admin") == "fleet2_admin"
