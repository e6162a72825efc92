"""tgfleet.migration.run_batch on a real Celery worker driven by a real beat.

Beat offers every component a batch each second; the worker (2 processes) runs them on
the ``migration`` queue. The worker is killed with SIGKILL part way and a new one
started: the end state must equal an uninterrupted in-process run.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

from tests.support.legacy import MIGRATED_TABLES, SNAPSHOT_SQL, snapshot
from tests.support.waiting import wait_for_log, wait_until
from tgfleet.dev.processes import Child, ProcessGroup
from tgfleet.legacy.format import Component
from tgfleet.legacy.generate import GenerateReport
from tgfleet.legacy.lifecycle import run_until_idle, start, status, verify
from tgfleet.platform.names import MIGRATION_BATCH, MIGRATION_QUEUE
from tgfleet.platform.schedule import migration_schedule
from tgfleet.platform.settings import Settings

APP = "tests.support.migration_app"


def test_beat_schedule_offers_every_component_on_the_migration_queue() -> None:
    schedule = migration_schedule(interval=5.0, batch_size=100)
    assert {e["args"][0] for e in schedule.values()} == {c.value for c in Component}
    assert all(e["task"] == MIGRATION_BATCH for e in schedule.values())
    assert all(e["options"]["queue"] == MIGRATION_QUEUE for e in schedule.values())
    assert all(e["kwargs"] == {"batch_size": 100} for e in schedule.values())


def _loaded(settings: Settings, root: Path) -> bool:
    return all(
        item.files_loaded == item.files
        for component in Component
        for item in status(settings, root, component)
    )


def _progress(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM messages")).scalar_one())


def test_worker_and_beat_migrate_a_store_despite_kill_9(
    clean_db: Settings,
    legacy_owner: Engine,
    legacy_env: dict[str, str],
    make_store: Callable[..., tuple[Path, GenerateReport]],
    tmp_path: Path,
) -> None:
    # Given what an uninterrupted run makes of a messy store
    root, report = make_store(bots=2, users=60, messages=12)
    for component in Component:
        start(clean_db, root, component)
        run_until_idle(clean_db, root, component, batch_size=40)
    expected = snapshot(legacy_owner)
    with legacy_owner.begin() as conn:
        conn.execute(text(f"TRUNCATE {MIGRATED_TABLES}"))
    for component in Component:
        start(clean_db, root, component)

    group = ProcessGroup(tmp_path / "logs", legacy_env)

    def worker(name: str) -> Child:
        child = group.start(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                APP,
                "worker",
                "-Q",
                "migration",
                "-c",
                "2",
                "-n",
                f"{name}-{os.getpid()}@%h",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
        )
        wait_for_log(child, "ready.", 60)
        return child

    try:
        # When beat and a worker run, and the worker is SIGKILLed once work is under way
        first = worker("worker1")
        group.start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                APP,
                "beat",
                "--schedule",
                str(tmp_path / "beat-schedule"),
                "--loglevel",
                "INFO",
            ],
        )
        wait_until(
            lambda: _progress(legacy_owner) > 0, 60, "beat + worker to start migrating", poll=0.05
        )
        assert _progress(legacy_owner) > 0, "beat + worker never started migrating"
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        killed_at = _progress(legacy_owner)
        worker("worker2")
        wait_until(lambda: _loaded(clean_db, root), 60, "the store to be migrated", poll=0.2)
    finally:
        group.stop()
    # Then the store was migrated completely after the kill
    assert _loaded(clean_db, root), "the store was not fully migrated within 60 s"
    assert killed_at < report.valid(Component.CONVERSATIONS), "the kill came after the end"
    # And the result is exactly the uninterrupted run's, and verifies
    got = snapshot(legacy_owner)
    for name in SNAPSHOT_SQL:
        assert got[name] == expected[name], f"{name} differs"
    assert all(r.passed for c in Component for r in verify(clean_db, root, c))
