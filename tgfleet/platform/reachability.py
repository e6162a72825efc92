"""Which service could not be reached, said in one line a person can act on.

``unreachable_service(exc, settings)`` recognises the errors PostgreSQL (psycopg2, also
wrapped by SQLAlchemy) and Redis (redis-py, also wrapped by kombu/Celery) raise when no
working connection can be made, and returns a ``ServiceUnreachable`` naming the service,
its address (host:port and database: never a password) and what to do; any other error
gives None. The ``tgfleet`` command's error boundary prints it, ``tgfleet status`` lists
it as a problem.

libpq says why a connection failed only in its message text, so the PostgreSQL reasons
below are read from that text; redis-py keeps the socket error as the ``__cause__``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import kombu.exceptions
import psycopg2
import redis.exceptions
from sqlalchemy.exc import DBAPIError

from tgfleet.platform.errors import ServiceError
from tgfleet.platform.settings import Settings

POSTGRES_DEFAULT_PORT = 5432
REDIS_DEFAULT_PORT = 6379


class Service(StrEnum):
    POSTGRESQL = "PostgreSQL"
    REDIS = "Redis"


class ServiceUnreachable(ServiceError):
    """``service`` at ``address`` could not be used: ``reason`` says why, ``advice`` what
    to do. ``variable`` is the setting that points tgfleet at it."""

    def __init__(
        self, service: Service, address: str, reason: str, advice: str, *, verb: str = "reach"
    ) -> None:
        super().__init__(f"cannot {verb} {service} at {address} ({reason}): {advice}")
        self.service = service
        self.address = address
        self.reason = reason
        self.advice = advice


@dataclass(frozen=True)
class _Target:
    variable: str  # the setting's environment variable
    url: str

    @property
    def parts(self) -> SplitResult:
        return urlsplit(self.url)


def _host_port(parts: SplitResult, default_port: int) -> tuple[str | None, int]:
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    return parts.hostname, port


def _joined(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def postgres_address(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL (the socket directory when no host)."""
    parts = urlsplit(url)
    host, port = _host_port(parts, POSTGRES_DEFAULT_PORT)
    query = parse_qs(parts.query)
    database = unquote(parts.path.lstrip("/")) or "(default database)"
    if host is None:
        socket_dir = query.get("host", ["the default socket"])[0]
        return f"{socket_dir} port {port}/{database}"
    return f"{_joined(host, port)}/{database}"


def redis_address(url: str) -> str:
    """``host:port/db`` of a Redis URL (``path (db N)`` for a unix socket)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        return f"{parts.path} (db {query.get('db', ['0'])[0]})"
    host, port = _host_port(parts, REDIS_DEFAULT_PORT)
    database = parts.path.lstrip("/") or query.get("db", ["0"])[0]
    return f"{_joined(host or 'localhost', port)}/{database}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, what it wraps (SQLAlchemy's ``orig``) and its causes and contexts."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = current.orig if isinstance(current, DBAPIError) else None
        for nxt in (orig, current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def unreachable_service(exc: BaseException, settings: Settings) -> ServiceUnreachable | None:
    """The unreachable service behind ``exc``, or None when ``exc`` is something else."""
    chain = list(_chain(exc))
    for error in chain:
        if isinstance(error, ServiceUnreachable):
            return error
        if isinstance(error, psycopg2.OperationalError) and _is_connection_error(error):
            return _postgres(str(error), settings)
        if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return _redis(error, settings)
    for error in chain:
        if isinstance(error, kombu.exceptions.OperationalError):
            return _redis(error, settings)
    return None


# --- PostgreSQL -------------------------------------------------------------------------------
def _is_connection_error(error: psycopg2.OperationalError) -> bool:
    """libpq failed to connect, or lost the connection: psycopg2 raises OperationalError
    itself, without an SQLSTATE; a statement's errors are subclasses that carry one."""
    return type(error) is psycopg2.OperationalError and error.pgcode is None


def _postgres_target(message: str, settings: Settings) -> _Target:
    """The URL the failed connection used: libpq names the host and port it tried."""
    targets = [_Target("DATABASE_URL", settings.database_url)]
    if settings.migrate_database_url:
        targets.append(_Target("MIGRATE_DATABASE_URL", settings.migrate_database_url))
    for target in targets:
        host, port = _host_port(target.parts, POSTGRES_DEFAULT_PORT)
        if host is not None and f'"{host}"' in message and f"port {port}" in message:
            return target
    return targets[0]


def _postgres(message: str, settings: Settings) -> ServiceUnreachable:
    target = _postgres_target(message, settings)
    where = f"{target.variable} sets where"
    running = f"is it running? `tgfleet dev up` starts a local one; {where}"
    lowered = message.lower()
    server_says = _scrub(message.partition("FATAL:")[2].strip(), settings) or "refused"
    verb, reason, advice = "reach", _first_line(message, settings), running
    if "connection refused" in lowered:
        reason = "connection refused"
    elif "no such file or directory" in lowered:
        reason = "no server on that socket"
    elif "timeout expired" in lowered or "timed out" in lowered:
        reason, advice = "timed out", f"is it running, and reachable from here? {where}"
    elif "could not translate host name" in lowered:
        reason, advice = "unknown host", f"check the host in {target.variable}"
    elif "database system is starting up" in lowered or "shutting down" in lowered:
        reason, advice = "starting up or shutting down", "try again in a moment"
    elif "too many clients" in lowered or "connection slots" in lowered:
        reason = "too many connections"
        advice = "raise its max_connections or lower TGFLEET_DB_POOL_SIZE"
    elif "database" in lowered and "does not exist" in lowered:
        verb, reason = "use", server_says
        advice = f"create it, or fix the database name in {target.variable}"
    elif "authentication" in lowered or "password" in lowered or "role" in lowered:
        verb, reason = "log in to", server_says
        advice = f"check the user and password in {target.variable}"
    return ServiceUnreachable(
        Service.POSTGRESQL, postgres_address(target.url), reason, advice, verb=verb
    )


# --- Redis ------------------------------------------------------------------------------------
def _redis_target(message: str, settings: Settings) -> _Target:
    """The URL the failed connection used: redis-py names the address it tried."""
    targets = [_Target("REDIS_URL", settings.redis_url)]
    if settings.result_backend:
        targets.append(_Target("TGFLEET_RESULT_BACKEND", settings.result_backend))
    for target in targets:
        parts = target.parts
        host, port = _host_port(parts, REDIS_DEFAULT_PORT)
        tried = parts.path if parts.scheme == "unix" else f"{host}:{port}"
        if f"connecting to {tried}." in message:
            return target
    return targets[0]


def _redis(error: BaseException, settings: Settings) -> ServiceUnreachable:
    target = _redis_target(str(error), settings)
    where = f"{target.variable} sets where"
    verb, reason = "reach", _first_line(str(error), settings)
    advice = f"is it running? `tgfleet dev up` starts a local one; {where}"
    cause = error.__cause__
    if isinstance(error, redis.exceptions.AuthenticationError):
        verb, reason = "log in to", "authentication failed"
        advice = f"check the password in {target.variable}"
    elif isinstance(error, redis.exceptions.BusyLoadingError):
        reason, advice = "still loading its data", "try again in a moment"
    elif isinstance(cause, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(cause, socket.gaierror):
        reason, advice = "unknown host", f"check the host in {target.variable}"
    elif isinstance(cause, FileNotFoundError):
        reason = "no server on that socket"
    elif isinstance(error, redis.exceptions.TimeoutError) or isinstance(cause, TimeoutError):
        reason, advice = "timed out", f"is it running, and reachable from here? {where}"
    return ServiceUnreachable(Service.REDIS, redis_address(target.url), reason, advice, verb=verb)


def _first_line(message: str, settings: Settings) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return _scrub(lines[0], settings) if lines else "connection failed"


def _scrub(text: str, settings: Settings) -> str:
    """``text`` without the services' passwords, should a library ever echo one."""
    urls = (
        settings.database_url,
        settings.migrate_database_url,
        settings.redis_url,
        settings.result_backend,
    )
    for url in filter(None, urls):
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            text = text.replace(password, "***")
    return text
