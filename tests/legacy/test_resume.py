"""kill -9 in the middle of batches, then resume: the result equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

from tests.support import REPO_ROOT
from tests.support.legacy import LEGACY_CLI, MIGRATED_TABLES, SNAPSHOT_SQL, run_cli, snapshot
from tests.support.waiting import wait_until
from tgfleet.legacy.format import Component
from tgfleet.legacy.generate import GenerateReport
from tgfleet.legacy.lifecycle import run_until_idle, start
from tgfleet.platform.settings import Settings


def _in_transaction(owner: Engine, database: str) -> bool:
    with owner.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d "
                    "AND application_name = 'tgfleet' "
                    "AND state IN ('active', 'idle in transaction') "
                    "AND query NOT LIKE '%pg_try_advisory_lock%'"
                ),
                {"d": database},
            ).scalar_one()
        )


def _progress(owner: Engine) -> int:
    """How far the migration got: grows with every committed batch (the checkpoints move)."""
    with owner.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT coalesce(sum(position), 0) + count(*) FILTER (WHERE complete) "
                    "FROM migration_checkpoints"
                )
            ).scalar_one()
        )


def _exited_or_progressed(
    child: subprocess.Popen[bytes], owner: Engine, before: int
) -> Callable[[], bool]:
    return lambda: child.poll() is not None or _progress(owner) > before


def test_kill_9_mid_batch_then_resume_equals_uninterrupted_run(
    clean_db: Settings,
    legacy_owner: Engine,
    legacy_env: dict[str, str],
    make_store: Callable[..., tuple[Path, GenerateReport]],
) -> None:
    # Given a messy store and the state an uninterrupted run leaves
    root, _ = make_store(bots=2, users=200, messages=15)
    for component in Component:
        start(clean_db, root, component)
        run_until_idle(clean_db, root, component, batch_size=150)
    expected = snapshot(legacy_owner)
    with legacy_owner.begin() as conn:
        conn.execute(text(f"TRUNCATE {MIGRATED_TABLES}"))
    database = legacy_owner.url.database or ""

    # When `migrate-json run` is killed with SIGKILL while a batch transaction is open,
    # several times
    kills_in_transaction = 0
    for attempt in range(4):
        before = _progress(legacy_owner)
        child = subprocess.Popen(
            [
                sys.executable,
                str(LEGACY_CLI),
                "migrate-json",
                "run",
                str(root),
                "--batch-size",
                "150",
            ],
            env=legacy_env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # (each run commits a batch of its own first, so every kill lands further on)
        wait_until(
            _exited_or_progressed(child, legacy_owner, before),
            30,
            f"run {attempt + 1} to commit a batch",
        )
        deadline = time.monotonic() + 30
        while child.poll() is None and time.monotonic() < deadline:
            if _in_transaction(legacy_owner, database):
                break
            time.sleep(0.002)
        if child.poll() is None:
            kills_in_transaction += _in_transaction(legacy_owner, database)
            os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    assert kills_in_transaction >= 1, "no kill landed inside a batch transaction"

    # And the migration is then run to the end
    done = run_cli(legacy_env, "migrate-json", "run", str(root), "--batch-size", "150")
    assert done.returncode == 0, done.stderr

    # Then the database is exactly what the uninterrupted run produced
    got = snapshot(legacy_owner)
    for name in SNAPSHOT_SQL:
        assert got[name] == expected[name], f"{name} differs after kill -9 and resume"
