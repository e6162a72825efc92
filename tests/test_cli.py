"""The ``tgfleet`` command's error boundary, tried as a new user would: with PostgreSQL or
Redis unreachable, every command group prints one line naming the service, its address
and what to do, and exits 1; never a traceback, never a password from the URLs.

The commands run as real subprocesses (``python -m tgfleet``) pointed at ports nothing
listens on; the other service is the session's real one. ``tgfleet status``, which keeps
going without one of them, is tested in tests/ops/test_status.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

from tgfleet.platform.settings import Settings

PG_PASSWORD = f"pg-{uuid.uuid4().hex[:12]}"
OWNER_PASSWORD = f"owner-{uuid.uuid4().hex[:12]}"
REDIS_PASSWORD = f"redis-{uuid.uuid4().hex[:12]}"
PASSWORDS = (PG_PASSWORD, OWNER_PASSWORD, REDIS_PASSWORD)

SEND = ["send", "--bot", "1000000001", "--to", "5", "--text", "hi"]


def closed_port() -> int:
    """A local TCP port nothing listens on (bound once to get a free one, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Down:
    """An environment with some services at closed ports, and their addresses."""

    env: dict[str, str]
    database: str = ""  # DATABASE_URL's host:port/db
    owner: str = ""  # MIGRATE_DATABASE_URL's
    redis: str = ""


@pytest.fixture
def postgres_down(subprocess_env: dict[str, str]) -> Down:
    """Given PostgreSQL at closed ports (the app's and the owner's URL differ) and the
    session's real Redis."""
    app, owner = closed_port(), closed_port()
    env = {
        **subprocess_env,
        "DATABASE_URL": f"postgresql://tgfleet_app:{PG_PASSWORD}@127.0.0.1:{app}/tgfleet",
        "MIGRATE_DATABASE_URL": f"postgresql://postgres:{OWNER_PASSWORD}@127.0.0.1:{owner}/own",
    }
    return Down(env, database=f"127.0.0.1:{app}/tgfleet", owner=f"127.0.0.1:{owner}/own")


@pytest.fixture
def redis_down(subprocess_env: dict[str, str], migrated: Settings) -> Down:
    """Given Redis at a closed port and the session's real, migrated PostgreSQL."""
    port = closed_port()
    env = {**subprocess_env, "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"}
    return Down(env, redis=f"127.0.0.1:{port}/0")


def tgfleet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tgfleet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(
    done: subprocess.CompletedProcess[str], service: str, address: str, variable: str
) -> None:
    """Exit 1 and one line on stderr naming the service, its address and the setting."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == 1, output
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"tgfleet: cannot reach {service} at {address} (connection refused): ")
    assert "is it running?" in line and f"{variable} sets where" in line
    for password in PASSWORDS:
        assert password not in output


@pytest.mark.parametrize(
    ("args", "variable"),
    [
        (["bots", "list"], "DATABASE_URL"),
        (["migrate-json", "status"], "DATABASE_URL"),
        (["outbox", "status"], "DATABASE_URL"),
        (["stats", "--bot", "1000000001"], "DATABASE_URL"),
        (["db", "current"], "MIGRATE_DATABASE_URL"),
        (["db", "upgrade"], "MIGRATE_DATABASE_URL"),
        (["db", "partitions", "--ensure"], "MIGRATE_DATABASE_URL"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_postgresql_down_is_one_line(postgres_down: Down, args: list[str], variable: str) -> None:
    # When a command that needs PostgreSQL runs
    done = tgfleet(postgres_down.env, *args)
    # Then it names the address of the URL it used (the owner's for migrations)
    address = postgres_down.owner if variable == "MIGRATE_DATABASE_URL" else postgres_down.database
    assert_one_line(done, "PostgreSQL", address, variable)


@pytest.mark.parametrize(
    "args",
    [["ping", "--timeout", "5"], SEND, ["outbox", "retry", "--bot", "1000000001"]],
    ids=lambda value: " ".join(value[:2]),
)
def test_redis_down_is_one_line(redis_down: Down, args: list[str]) -> None:
    # When a command that needs Redis runs
    done = tgfleet(redis_down.env, *args)
    # Then it says Redis cannot be reached, where, and what to do
    assert_one_line(done, "Redis", redis_down.redis, "REDIS_URL")


def test_send_with_redis_down_writes_nothing(redis_down: Down, migrated: Settings) -> None:
    from tests.support.databases import query

    # When a broadcast is sent while Redis is down
    broadcast = str(uuid.uuid4().int % 10**12)
    done = tgfleet(redis_down.env, *SEND, "--broadcast-id", broadcast)
    # Then it stops before queueing anything (its deliveries could not be enqueued)
    assert done.returncode == 1
    assert query(migrated, "SELECT count(*) FROM outbox WHERE broadcast_id = %s", broadcast) == [
        (0,)
    ]


def test_with_both_down_the_service_needed_first_is_named(postgres_down: Down) -> None:
    # Given Redis down as well
    redis_port = closed_port()
    env = {**postgres_down.env, "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0"}
    # When a database command and a broker command run
    bots = tgfleet(env, "bots", "list")
    ping = tgfleet(env, "ping", "--timeout", "5")
    # Then each names the service it needed
    assert_one_line(bots, "PostgreSQL", postgres_down.database, "DATABASE_URL")
    assert_one_line(ping, "Redis", f"127.0.0.1:{redis_port}/0", "REDIS_URL")


def test_a_deliberate_error_keeps_its_own_line(subprocess_env: dict[str, str]) -> None:
    # When a command is refused for a reason of its own (a TgfleetError)
    done = tgfleet(subprocess_env, "stats", "--bot", "1", "--days", "0")
    # Then that reason is the one line, not an outage
    assert done.returncode == 1
    assert done.stderr.strip() == "tgfleet: --days must be at least 1"
