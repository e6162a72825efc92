"""Metrics without a process that serves them: the no-op set, the file_sd list, the
pool directories a worker cleans (tests/ops/test_metrics.py scrapes real processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from tgfleet.platform import metrics as metrics_module
from tgfleet.platform.metrics import Endpoint, Metrics, file_sd, metrics
from tgfleet.platform.settings import load_settings

ENV = {
    "DATABASE_URL": "postgresql://app:pw@127.0.0.1:5432/tgfleet",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "TGFLEET_SECRET_KEY": "x3o8lJmQ0uA3s9pZcQY1Y7wQ7j0l0p3i0kzqf1VZbq4=",
    "TG_API_ID": "12345",
    "TG_API_HASH": "0123456789abcdef0123456789abcdef",
}


def test_a_process_that_serves_nothing_records_nothing() -> None:
    # Given a process that never called serve (the CLI, a test)
    off = metrics()
    # Then every metric takes its calls and keeps nothing
    off.sends.labels("1", "sent").inc(3)
    off.update_latency.labels("1").observe(0.5)
    off.lease_held.labels("1").set(1)
    # (nothing reached prometheus_client's default registry either)
    assert "tgfleet_" not in generate_latest(REGISTRY).decode()


def test_metrics_in_a_registry_are_exposed_with_their_labels() -> None:
    registry = CollectorRegistry()
    made = Metrics(registry)
    made.sends.labels("7", "sent").inc(2)
    made.send_latency.labels("7", "reply").observe(0.2)
    text = generate_latest(registry).decode()
    assert 'tgfleet_sends_total{bot="7",outcome="sent"} 2.0' in text
    assert 'tgfleet_send_latency_seconds_count{bot="7",kind="reply"} 1.0' in text
    # and families nothing was recorded in yet are still described
    assert "# TYPE tgfleet_flood_waits_total counter" in text


def test_file_sd_groups_endpoints_by_role_and_node() -> None:
    found = [
        Endpoint("worker", "a", 2, "http://10.0.0.1:9401/metrics"),
        Endpoint("worker", "a", 1, "http://10.0.0.1:9400/metrics"),
        Endpoint("beat", "b", 3, "http://10.0.0.2:9400/metrics"),
    ]
    assert file_sd(found) == [
        {"targets": ["10.0.0.2:9400"], "labels": {"role": "beat", "node": "b"}},
        {"targets": ["10.0.0.1:9400", "10.0.0.1:9401"], "labels": {"role": "worker", "node": "a"}},
    ]


def test_a_worker_s_pool_directory_starts_empty_and_dead_workers_ones_go(tmp_path: Path) -> None:
    # Given the directories of a worker that died and of one that runs (this process)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f"worker-{int(gone.stdout)}"
    dead.mkdir()
    (dead / "counter_1.db").write_bytes(b"x")
    alive = tmp_path / "beat-1"  # pid 1 runs
    alive.mkdir()
    settings = load_settings(_env_file=None, **ENV, TGFLEET_METRICS_DIR=str(tmp_path))
    # When a worker starts
    path = metrics_module._fresh_pool_dir(settings, "worker")
    # Then its own directory is new and empty, the dead worker's is gone, the live one kept
    assert path.is_dir() and not any(path.iterdir())
    assert not dead.exists() and alive.exists()
