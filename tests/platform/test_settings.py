"""Settings: a missing or invalid value stops the CLI with exit 2 and a clear line.

The messages themselves, for every variable, are checked in-process by the unit layer
(tests/unit/platform/test_settings.py); these run the real ``tgfleet`` command.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

GOOD = {
    "DATABASE_URL": "postgresql://app:dbsecretpw@127.0.0.1:5432/tgfleet",
    "REDIS_URL": "redis://:redissecretpw@127.0.0.1:6379/0",
    "TGFLEET_SECRET_KEY": "x3o8lJmQ0uA3s9pZcQY1Y7wQ7j0l0p3i0kzqf1VZbq4=",
    "TG_API_ID": "12345",
    "TG_API_HASH": "0123456789abcdef0123456789abcdef",
}
SECRETS = ("dbsecretpw", "redissecretpw", "x3o8lJmQ0uA3s9pZ", "0123456789abcdef01")


def run_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tgfleet", "ping", "--timeout", "0.1"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("variable", sorted(GOOD))
def test_missing_variable_exits_2_naming_it(variable: str) -> None:
    # Given every required variable but one
    env = {k: v for k, v in GOOD.items() if k != variable}
    # When the CLI starts
    done = run_cli(env)
    # Then it exits 2 with one line naming the variable, and no secret leaks
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{variable} is not set" in lines[0]
    for secret in SECRETS:
        assert secret not in done.stderr


@pytest.mark.parametrize(
    ("variable", "bad", "expect"),
    [
        ("DATABASE_URL", "mysql://root:dbsecretpw@db/x", "postgresql://"),
        ("REDIS_URL", "http://redissecretpw@x", "redis://"),
        ("TGFLEET_SECRET_KEY", "not-a-key-x3o8lJmQ0uA3s9pZ", "Fernet key"),
        ("TG_API_ID", "abc", "api_id"),
        ("TG_API_ID", "-5", "api_id"),
        ("TG_API_HASH", "0123456789abcdef01", "hex api_hash"),
        ("TG_SERVER", "localhost", "host:port"),
        ("TGFLEET_LOG_FORMAT", "xml", "plain or json"),
        ("TGFLEET_VISIBILITY_TIMEOUT_S", "10", "TGFLEET_VISIBILITY_TIMEOUT_S"),
    ],
)
def test_invalid_variable_exits_2_with_example(variable: str, bad: str, expect: str) -> None:
    # Given one invalid value
    done = run_cli({**GOOD, variable: bad})
    # Then exit 2, the variable named, a hint of a good value, no secret echoed
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr
    assert expect in done.stderr
    for secret in SECRETS:
        assert secret not in done.stderr
