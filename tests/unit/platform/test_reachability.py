"""An error from an unreachable service becomes one line: service, address, why, what to do.

The errors are built as the drivers raise them (psycopg2's message as libpq writes it,
redis-py's ConnectionError raised from the socket error, kombu's OperationalError raised
from that); the behaviour tests (tests/test_cli.py) get them from real closed ports.
"""

from __future__ import annotations

from collections.abc import Callable

import kombu.exceptions
import psycopg2
import pytest
import redis.exceptions
from sqlalchemy.exc import OperationalError

from tgfleet.platform.reachability import (
    Service,
    ServiceUnreachable,
    postgres_address,
    redis_address,
    unreachable_service,
)
from tgfleet.platform.settings import Settings

SECRET = "s3cret-Pa55"


def from_sqlalchemy(message: str) -> OperationalError:
    """What SQLAlchemy raises when psycopg2 cannot connect."""
    try:
        raise OperationalError(None, None, psycopg2.OperationalError(message))
    except OperationalError as exc:
        return exc


def from_redis(cause: OSError, message: str) -> redis.exceptions.ConnectionError:
    try:
        raise redis.exceptions.ConnectionError(message) from cause
    except redis.exceptions.ConnectionError as exc:
        return exc


def from_kombu(inner: BaseException) -> kombu.exceptions.OperationalError:
    try:
        raise kombu.exceptions.OperationalError(str(inner)) from inner
    except kombu.exceptions.OperationalError as exc:
        return exc


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        DATABASE_URL=f"postgresql://app:{SECRET}@db.example:6432/fleet",
        MIGRATE_DATABASE_URL=f"postgresql://owner:{SECRET}@owner.example:5433/fleet",
        REDIS_URL=f"redis://:{SECRET}@cache.example:6380/2",
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            'connection to server at "db.example", port 6432 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?\n",
            "cannot reach PostgreSQL at db.example:6432/fleet (connection refused): is it "
            "running? `tgfleet dev up` starts a local one; DATABASE_URL sets where",
        ),
        (
            'connection to server at "owner.example", port 5433 failed: timeout expired\n',
            "cannot reach PostgreSQL at owner.example:5433/fleet (timed out): is it running, "
            "and reachable from here? MIGRATE_DATABASE_URL sets where",
        ),
        (
            'could not translate host name "db.example" to address: Name or service not known',
            "cannot reach PostgreSQL at db.example:6432/fleet (unknown host): check the host "
            "in DATABASE_URL",
        ),
        (
            'connection to server at "db.example", port 6432 failed: FATAL:  password '
            'authentication failed for user "app"\n',
            "cannot log in to PostgreSQL at db.example:6432/fleet (password authentication "
            'failed for user "app"): check the user and password in DATABASE_URL',
        ),
        (
            'connection to server at "db.example", port 6432 failed: FATAL:  database '
            '"fleet" does not exist\n',
            'cannot use PostgreSQL at db.example:6432/fleet (database "fleet" does not '
            "exist): create it, or fix the database name in DATABASE_URL",
        ),
    ],
)
def test_a_postgresql_connection_failure_is_one_line(
    settings: Settings, message: str, expected: str
) -> None:
    # Given the error SQLAlchemy raises when libpq cannot connect
    # When it is described
    found = unreachable_service(from_sqlalchemy(message), settings)
    # Then it names the service, the address of the URL that was tried and what to do
    assert found is not None and found.service is Service.POSTGRESQL
    assert str(found) == expected
    assert SECRET not in str(found)


def test_an_error_of_a_statement_is_not_an_outage(settings: Settings) -> None:
    # Given an error PostgreSQL raised for a statement (it carries an SQLSTATE)
    try:
        raise OperationalError(None, None, psycopg2.errors.QueryCanceled("lock timeout"))
    except OperationalError as exc:
        error = exc
    # When it is described; Then it is not taken for an unreachable server
    assert unreachable_service(error, settings) is None
    assert unreachable_service(ValueError("bug"), settings) is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            from_redis(ConnectionRefusedError(111, "Connection refused"), "Error 111"),
            "cannot reach Redis at cache.example:6380/2 (connection refused): is it running? "
            "`tgfleet dev up` starts a local one; REDIS_URL sets where",
        ),
        (
            from_kombu(from_redis(ConnectionRefusedError(111, "Connection refused"), "Err")),
            "cannot reach Redis at cache.example:6380/2 (connection refused): is it running? "
            "`tgfleet dev up` starts a local one; REDIS_URL sets where",
        ),
        (
            redis.exceptions.TimeoutError("Timeout connecting to server"),
            "cannot reach Redis at cache.example:6380/2 (timed out): is it running, and "
            "reachable from here? REDIS_URL sets where",
        ),
        (
            redis.exceptions.AuthenticationError("invalid username-password pair"),
            "cannot log in to Redis at cache.example:6380/2 (authentication failed): check "
            "the password in REDIS_URL",
        ),
    ],
)
def test_a_redis_connection_failure_is_one_line(
    settings: Settings, error: BaseException, expected: str
) -> None:
    # Given what redis-py (or kombu, on top of it) raises; When it is described
    found = unreachable_service(error, settings)
    # Then it names Redis, its address and what to do
    assert found is not None and found.service is Service.REDIS
    assert str(found) == expected


def test_an_error_already_described_passes_through(settings: Settings) -> None:
    error = ServiceUnreachable(Service.REDIS, "r:1/0", "connection refused", "start it")
    assert unreachable_service(error, settings) is error


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("postgresql://u:pw@127.0.0.1/tgfleet", "127.0.0.1:5432/tgfleet"),
        ("postgresql+psycopg2://u:pw@[::1]:6000/x", "[::1]:6000/x"),
        ("postgresql://u@/tgfleet?host=/run/postgresql", "/run/postgresql port 5432/tgfleet"),
        ("postgresql://u:pw@db", "db:5432/(default database)"),
    ],
)
def test_postgres_address_never_shows_the_user_or_password(url: str, address: str) -> None:
    assert postgres_address(url) == address


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "127.0.0.1:6379/0"),
        ("rediss://user:pw@cache", "cache:6379/0"),
        ("unix:///tmp/redis.sock?db=3", "/tmp/redis.sock (db 3)"),
    ],
)
def test_redis_address_never_shows_the_password(url: str, address: str) -> None:
    assert redis_address(url) == address
