"""`tgfleet dev up|status|env|down` on a fresh home: idempotent, root and non-root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
import redis

from tests.support import REPO_ROOT


def tgfleet(home: Path, *args: str, as_user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if as_user is not None:
        # A user namespace makes this process uid `as_user` (not root) for every check
        # PostgreSQL and tgfleet make, while it can still read the root-owned venv.
        prefix = ["unshare", "--user", f"--map-user={as_user}", f"--map-group={as_user}"]
    env = {**os.environ, "TGFLEET_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tgfleet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def exports(text: str) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in text.splitlines())
    return {key: value.strip("'") for key, value in pairs}


def check_lifecycle(home: Path, as_user: int | None = None) -> None:
    # When `up` runs twice
    first = tgfleet(home, "dev", "up", as_user=as_user)
    assert first.returncode == 0, first.stderr
    started = time.monotonic()
    second = tgfleet(home, "dev", "up", as_user=as_user)
    assert second.returncode == 0, second.stderr
    # Then the second call finds everything running (no restart, same ports)
    assert time.monotonic() - started < 5
    assert first.stdout.splitlines()[:2] == second.stdout.splitlines()[:2]
    status = tgfleet(home, "dev", "status", "--json", as_user=as_user)
    assert status.returncode == 0
    info = json.loads(status.stdout)
    assert info["postgresql"]["running"] and info["redis"]["running"]
    # And the exported URLs reach real servers
    env = exports(tgfleet(home, "dev", "env", as_user=as_user).stdout)
    with psycopg2.connect(env["MIGRATE_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int")
        assert cur.fetchone()[0] >= 150000
    assert redis.Redis.from_url(env["REDIS_URL"]).ping()
    # When `down` runs, only what it started stops, and a second `down` is a no-op
    down = tgfleet(home, "dev", "down", as_user=as_user)
    assert "postgresql" in down.stdout and "redis" in down.stdout
    assert "nothing was running" in tgfleet(home, "dev", "down", as_user=as_user).stdout
    assert tgfleet(home, "dev", "status", as_user=as_user).returncode == 1


def test_dev_services_lifecycle_as_current_user(tmp_path: Path) -> None:
    check_lifecycle(tmp_path / "home")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_dev_services_lifecycle_as_non_root_user(tmp_path: Path) -> None:
    # Given a non-root user (uid 1000 in a user namespace) owning the home
    home = tmp_path / "home"
    check_lifecycle(home, as_user=1000)


def test_env_before_up_says_what_to_do(tmp_path: Path) -> None:
    done = tgfleet(tmp_path / "empty", "dev", "env")
    assert done.returncode == 1
    assert "tgfleet dev up" in done.stderr
