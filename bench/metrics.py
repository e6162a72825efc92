"""Metrics benchmark: what Prometheus metrics cost ingest, and whether the dashboards and
alert rules in deploy/ query metrics the processes serve.

Rounds alternate metrics on and off (TGFLEET_METRICS) in one run, on one PostgreSQL,
Redis and simulator. Each round takes a new bot on the echo app: `tgfleet listen` queues
N updates over 100 private chats with no worker running, then 2 prefork update workers
handle them; the round's rate is its messages over the span of their processed_at (worker
start-up excluded), as bench/ingest.py measures (c), and the worker's CPU time (its pool
processes' too) per update, which a busy machine disturbs less. During the "on" rounds every
endpoint is scraped, and beat's once; `metric_names` are the families scraped.

    .venv/bin/python bench/metrics.py [--messages N] [--rounds R]

Last line: {"overhead_ratio": on/off (median of each; goal >= 0.95), "metric_names": [...],
"dashboard_exprs_ok": every dashboard and alert query names a scraped metric, ...}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from celery_baseline import worker_args  # noqa: E402
from ingest import CHATS, count_rows, handled_rate, wait_for  # noqa: E402

from tgfleet.db import fleet, upgrade_database  # noqa: E402
from tgfleet.dev.processes import ProcessGroup, child_environ  # noqa: E402
from tgfleet.dev.services import DevServices  # noqa: E402
from tgfleet.listeners.publisher import QueuedEnvelopes  # noqa: E402
from tgfleet.ops.metrics import unserved  # noqa: E402
from tgfleet.platform.metrics import announced  # noqa: E402
from tgfleet.platform.settings import Settings, load_settings  # noqa: E402
from tgfleet.simulator import FloodLimits, SimulatorThread  # noqa: E402


def scrape(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return {f.name for f in text_string_to_metric_families(response.read().decode())}


def scrape_all(settings: Settings, pids: set[int], timeout: float = 20.0) -> set[str]:
    """The families served by the processes ``pids``, once each announced its endpoint."""
    names: set[str] = set()
    for endpoint in announced(settings, pids, timeout).values():
        names |= scrape(endpoint.url)
    return names


def queries() -> list[str]:
    """What the dashboard and the alert rules query (the rules file whole: its exprs)."""
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/tgfleet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return [*exprs, (ROOT / "deploy/prometheus/alerts.yml").read_text()]


def one_round(
    settings: Settings,
    sim: SimulatorThread,
    group: ProcessGroup,
    broker: redis.Redis,
    users: list[int],
    n: int,
    on: bool,
    scraped: set[str],
) -> dict[str, float]:
    bot = sim.create_bot()
    bot_id = int(bot["id"])
    fleet.save_bot(settings, bot["token"], name=f"bench{bot_id}", admin_chat_ids=[], app="echo")
    env = {"TGFLEET_METRICS": "true" if on else "false"}
    broker.delete("updates")
    listener = group.start(
        f"listener-{bot_id}",
        [sys.executable, "-m", "tgfleet", "listen", "--bots", str(bot_id)],
        extra_env=env,
    )
    wait_for(lambda: f"listening for bot {bot_id}" in listener.log_path.read_text(), 60, "it")
    started = time.perf_counter()
    for k in range(n):
        sim.send(users[k % len(users)], bot_id, "work")
    queued = QueuedEnvelopes(broker)
    wait_for(lambda: queued() >= n, 600, "the listener's publishes")
    publish_rate = n / (time.perf_counter() - started)
    worker = group.celery(f"worker-{bot_id}", *worker_args("updates"), extra_env=env)
    wait_for(lambda: count_rows(settings, bot_id) >= 1, 120, "the first update", poll=0.02)
    first, cpu_first = count_rows(settings, bot_id), cpu_seconds(worker.process.pid)
    wait_for(lambda: count_rows(settings, bot_id) >= n, 900, "the workers", poll=0.2)
    cpu_ms = (cpu_seconds(worker.process.pid) - cpu_first) * 1000 / max(1, n - first)
    rate = handled_rate(settings, bot_id)
    if on:
        scraped |= scrape_all(settings, {listener.process.pid, worker.process.pid})
    wait_for(lambda: broker.llen("updates") == 0 and broker.hlen("unacked") == 0, 120, "retries")
    for child in (worker, listener):
        child.stop()
    return {"rate": rate, "publish_rate": publish_rate, "cpu_ms": cpu_ms}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a worker and its pool processes so far."""
    main = psutil.Process(pid)
    total = 0.0
    for process in [main, *main.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    services = DevServices(home / "services")
    services.up()
    try:
        with SimulatorThread(limits=FloodLimits(enabled=False)) as sim:
            env = {**services.env(), **sim.env(home / "sim.pem")}
            settings = load_settings(**env)
            upgrade_database(settings)
            broker = redis.Redis.from_url(settings.redis_url)
            users = [int(sim.create_user(f"Bench{i}")["id"]) for i in range(CHATS)]
            n = args.messages - args.messages % CHATS
            rounds: dict[bool, list[dict[str, float]]] = {True: [], False: []}
            scraped: set[str] = set()
            child_env = child_environ(env, {"PYTHONPATH": str(ROOT)})
            with ProcessGroup(home / "logs", child_env) as group:
                beat = group.celery("beat", "beat", "--schedule", str(home / "schedule"))
                scraped |= scrape_all(settings, {beat.process.pid}, timeout=60)
                beat.stop()
                for k in range(args.rounds * 2):
                    on = k % 2 == (k // 2) % 2  # on, off, off, on, on, off, ...: ABBA
                    result = one_round(settings, sim, group, broker, users, n, on, scraped)
                    rounds[on].append(result)
                    state = "on " if on else "off"
                    print(
                        f"round {k + 1}: metrics {state} {result['rate']:7.1f} updates/s, "
                        f"{result['cpu_ms']:5.2f} ms of worker CPU each "
                        f"(listener publishes {result['publish_rate']:7.1f}/s)",
                        flush=True,
                    )
            broker.close()
    finally:
        services.down()
    return {"rounds": rounds, "scraped": scraped, "n": n}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000, help="updates per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds with metrics on (and off)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tgfleet-metrics-") as tmp:
        r = run(args, Path(tmp))
    on = statistics.median(x["rate"] for x in r["rounds"][True])
    off = statistics.median(x["rate"] for x in r["rounds"][False])
    cpu_on = statistics.median(x["cpu_ms"] for x in r["rounds"][True])
    cpu_off = statistics.median(x["cpu_ms"] for x in r["rounds"][False])
    publish_on = statistics.median(x["publish_rate"] for x in r["rounds"][True])
    publish_off = statistics.median(x["publish_rate"] for x in r["rounds"][False])
    scraped: set[str] = r["scraped"]
    exprs = queries()
    queried = {name for expr in exprs for name in re.findall(r"\btgfleet_[a-z0-9_]+", expr)}
    missing = sorted(unserved(exprs, scraped))
    print()
    print(f"{r['n']} updates a round, {len(r['rounds'][True])} rounds each way (ABBA order)")
    print(f"update workers, metrics on:  {on:8.1f} updates/s (median)")
    print(f"update workers, metrics off: {off:8.1f} updates/s (median)")
    print(f"overhead_ratio (on / off):   {on / off:8.3f}   (goal >= 0.95)")
    print(f"worker CPU per update on / off: {cpu_on:.2f} / {cpu_off:.2f} ms")
    print(f"listener publishes on / off: {publish_on / publish_off:8.3f}")
    print(f"families scraped: {len(scraped)}; dashboard and alert names: {len(queried)}")
    print(f"queried but not scraped: {', '.join(missing) or 'none'}")
    print(
        json.dumps(
            {
                "overhead_ratio": round(on / off, 3),
                "updates_per_s_on": round(on, 1),
                "updates_per_s_off": round(off, 1),
                "cpu_ms_per_update_on": round(cpu_on, 3),
                "cpu_ms_per_update_off": round(cpu_off, 3),
                "publish_ratio_on_off": round(publish_on / publish_off, 3),
                "metric_names": sorted(scraped),
                "dashboard_exprs_ok": not missing,
            }
        )
    )


if __name__ == "__main__":
    main()
