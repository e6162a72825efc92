"""Baseline: Celery tasks/s on the local services with 2 prefork worker processes.

(a) no-op tasks, (b) tasks that each INSERT one row; no result backend. Later
benchmarks divide by these figures. Brings up its own PostgreSQL + Redis in a
temporary folder and stops them at the end.

    .venv/bin/python bench/celery_baseline.py [--tasks N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tgfleet.dev.processes import ProcessGroup  # noqa: E402
from tgfleet.dev.services import DevServices  # noqa: E402


def worker_args(queue: str) -> list[str]:
    """The worker every benchmark compares: 2 prefork processes on ``queue``, quiet."""
    return [
        "worker",
        "-Q",
        queue,
        "-c",
        "2",
        "-P",
        "prefork",
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "WARNING",
    ]


def drained(client: redis.Redis) -> bool:
    return client.llen("bench") == 0 and client.hlen("unacked") == 0


def measure(kind: str, n: int, env: dict[str, str], client: redis.Redis, db_url: str) -> float:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT / "bench"))
    from baseline_app import app  # the benchmark's app, built from env

    task = app.tasks[f"bench.{kind}"]
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for i in range(n):
            task.apply_async(args=[i], producer=producer)
    while not drained(client):
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    if kind == "insert":
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM bench_baseline")
            rows = cur.fetchone()[0]
        assert rows == n, f"expected {n} rows, found {rows}"
    return n / elapsed


def run_baseline(env: dict[str, str], workdir: Path, tasks: int) -> dict[str, float]:
    """No-op and one-INSERT tasks/s on the services ``env`` points at (2 prefork workers)."""
    env = {**os.environ, **env, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    db_url = env["MIGRATE_DATABASE_URL"]
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS bench_baseline (id bigserial PRIMARY KEY, n bigint)"
        )
        cur.execute("TRUNCATE bench_baseline")
    client = redis.Redis.from_url(env["REDIS_URL"])
    results: dict[str, float] = {}
    worker = [sys.executable, "-m", "celery", "-A", "baseline_app", *worker_args("bench")]
    with ProcessGroup(workdir / "baseline-logs", env) as group:
        group.start("worker", worker)
        # Warm-up: returns once the worker is up and has drained 200 tasks.
        measure("noop", 200, env, client, db_url)
        results["noop"] = measure("noop", tasks, env, client, db_url)
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE bench_baseline")
        results["insert"] = measure("insert", tasks, env, client, db_url)
    client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-") as tmp:
        services = DevServices(Path(tmp))
        services.up()
        try:
            results = run_baseline(services.env(), Path(tmp), args.tasks)
        finally:
            services.down()
    cores = os.cpu_count() or 0
    print(
        f"celery baseline ({args.tasks} tasks each, 2 prefork workers, no result backend, "
        f"task events off, {cores} cores)"
    )
    print(f"  no-op tasks:      {results['noop']:8.0f} tasks/s")
    print(f"  one-INSERT tasks: {results['insert']:8.0f} tasks/s")
    print(
        json.dumps(
            {
                "bench": "celery_baseline",
                "noop_tasks_per_s": round(results["noop"], 1),
                "insert_tasks_per_s": round(results["insert"], 1),
                "cores": cores,
            }
        )
    )


if __name__ == "__main__":
    main()
