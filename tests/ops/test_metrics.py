"""Prometheus metrics scraped from the real processes of a bot's run on the simulator:
the listener, the prefork update worker, the threads sender and beat."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.support.waiting import wait_until
from tgfleet.ops.health import collect_snapshot
from tgfleet.ops.metrics import family_names
from tgfleet.platform import metrics as metrics_module
from tgfleet.platform.beat import LOCK_KEY
from tgfleet.platform.metrics import Endpoint, announced, endpoints, file_sd
from tgfleet.platform.settings import Settings
from tgfleet.simulator import SimulatorThread
from tgfleet.testing import BotFactory, UserFactory
from tgfleet.testing.fleet import LocalFleet, wait_for_log

pytestmark = pytest.mark.timeout(300)

MESSAGES = 5
#: Every label name a tgfleet metric may carry (bounded values; never a user or a chat).
LABELS = {"bot", "outcome", "kind", "reason", "status", "queue", "component", "state"}


def scrape(endpoint: Endpoint) -> dict[str, Metric]:
    with urllib.request.urlopen(endpoint.url, timeout=5) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels``."""
    family = families.get(sample.removesuffix("_total").removesuffix("_count"))
    if family is None:
        return 0.0
    return sum(
        s.value for s in family.samples if s.name == sample and labels.items() <= s.labels.items()
    )


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tgfleet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_process_serves_metrics_that_count_what_happened(
    tgfleet_bot: BotFactory,
    tgfleet_user: UserFactory,
    tgfleet_fleet: LocalFleet,
    tgfleet_settings: Settings,
    tgfleet_simulator: SimulatorThread,
    tgfleet_env: dict[str, str],
    tmp_path: Path,
) -> None:
    # Given beat, and an echo bot on its listener, update worker and sender (beat starts
    # while they do)
    beat = tgfleet_fleet.group.celery("beat", "beat", "--schedule", str(tmp_path / "schedule"))
    bot = tgfleet_bot(app="echo")
    updates_worker, sender = tgfleet_fleet.workers
    roles = {
        bot.listener.process.pid: "listener",
        updates_worker.process.pid: "updates",
        sender.process.pid: "sender",
        beat.process.pid: "beat",
    }

    # (a leased bot's counters exist from the start, at 0: the silent-bot alert needs them)
    first = announced(tgfleet_settings, [bot.listener.process.pid], 30)
    assert first, "the listener announced no endpoint"
    received = scrape(*first.values())["tgfleet_updates_received"].samples
    assert [(s.labels, s.value) for s in received] == [({"bot": str(bot.id)}, 0.0)]
    # When a user sends messages and gets every echo back
    ann = tgfleet_user("Ann")
    for n in range(MESSAGES):
        ann.send(f"hello {n}")
        ann.expect_reply(f"hello {n}")

    # Then each process announced its endpoint on 127.0.0.1
    found = {roles[pid]: e for pid, e in announced(tgfleet_settings, roles, 30).items()}
    assert set(found) == set(roles.values()), found
    assert all(e.url.startswith("http://127.0.0.1:") for e in found.values()), found
    assert {g["labels"]["role"] for g in file_sd(found.values())} == {"listener", "worker", "beat"}
    label = str(bot.id)
    # and the counters moved by what happened: every update received, published, handled
    listener = scrape(found["listener"])
    assert value(listener, "tgfleet_updates_received_total", bot=label) == MESSAGES
    assert value(listener, "tgfleet_updates_published_total", bot=label) == MESSAGES
    assert value(listener, "tgfleet_lease_held", bot=label) == 1
    updates = scrape(found["updates"])  # summed over the worker's pool processes
    assert value(updates, "tgfleet_updates_handled_total", bot=label, outcome="processed") == (
        MESSAGES
    )
    assert value(updates, "tgfleet_update_latency_seconds_count", bot=label) == MESSAGES
    # and every reply sent, its latency observed (the mark may follow the delivery)
    wait_until(
        lambda: value(scrape(found["sender"]), "tgfleet_sends_total", bot=label) == MESSAGES,
        30,
        "the sender's counter",
    )
    sends = scrape(found["sender"])
    assert value(sends, "tgfleet_sends_total", bot=label, outcome="sent") == MESSAGES
    assert value(sends, "tgfleet_send_latency_seconds_count", bot=label, kind="reply") == (MESSAGES)
    assert value(sends, "tgfleet_flood_waits_total", bot=label) == 0
    # and beat serves the fleet's state: the bot leased, the queues, the services up
    cluster = scrape(found["beat"])
    assert value(cluster, "tgfleet_cluster_up") == 1
    assert value(cluster, "tgfleet_bot_leased", bot=label) == 1
    assert {s.labels["queue"] for s in cluster["tgfleet_queue_depth"].samples} >= {
        "updates",
        "sends",
    }
    # and together the processes serve every family the dashboards may query
    scraped = [listener, updates, sends, cluster]
    assert family_names() <= {name for families in scraped for name in families}
    # and `tgfleet metrics targets` lists them for Prometheus, `tgfleet status --json` too
    targets = run_cli(tgfleet_env, "metrics", "targets")
    listed = {t for group in json.loads(targets) for t in group["targets"]}
    assert {e.target for e in found.values()} <= listed
    status = collect_snapshot(tgfleet_settings).as_dict()  # what status --json prints
    assert {e.url for e in found.values()} <= {e["url"] for e in status["metrics_endpoints"]}
    # and no label carries a secret or names a user
    bot_token = next(b["token"] for b in tgfleet_simulator.bots() if int(b["id"]) == bot.id)
    secrets = {bot_token, tgfleet_settings.tg_api_hash.get_secret_value(), str(ann.id)}
    for families in scraped:
        for family in families.values():
            for s in family.samples:
                assert set(s.labels) <= LABELS | {"le"}, (s.name, s.labels)
                assert not secrets & set(s.labels.values()), (s.name, s.labels)


def test_a_process_with_metrics_off_serves_none(
    tgfleet_fleet: LocalFleet, tgfleet_settings: Settings, tmp_path: Path
) -> None:
    # Given beat started with TGFLEET_METRICS=false
    beat = tgfleet_fleet.group.celery(
        "beat-off",
        "beat",
        "--schedule",
        str(tmp_path / "schedule"),
        extra_env={"TGFLEET_METRICS": "false"},
    )
    # When it has started scheduling (or standing by: its metrics come before either)
    wait_for_log(beat, LOCK_KEY, 60)
    # Then it announced no endpoint
    assert beat.process.pid not in {e.pid for e in endpoints(tgfleet_settings)}


def test_the_endpoint_serves_its_registry_and_stops_at_once() -> None:
    # Given a registry served on a free local port
    registry = CollectorRegistry()
    metrics_module.Metrics(registry).updates_received.labels("7").inc()
    server = metrics_module._serve("127.0.0.1", 0, registry)
    # Then a scrape reads it
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert 'tgfleet_updates_received_total{bot="7"} 1.0' in response.read().decode()
    # And stopping it takes a poll of SERVE_POLL_S, not socketserver's half second
    started = time.monotonic()
    server.shutdown()
    server.server_close()
    assert time.monotonic() - started < 0.3
