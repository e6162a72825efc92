"""Ingest benchmark: simulator -> `tgfleet listen` -> Redis -> update workers -> PostgreSQL.

(a) listener publish rate vs bare kombu publishes of the same payloads (goal >= 0.7x);
(b) update -> committed row latency at 200 msg/s (goal p50 <= 30 ms, p99 <= 200 ms);
(c) sustained updates/s with 2 worker processes vs celery_baseline's one-INSERT rate
    (goal >= 1.0x), vs a "monolith": one Telethon process doing the same handler work
    inline, and vs the same workers with kombu's BRPOP in place of the hand-off
    (``handoff_ratio_brpop``: what not losing a message on the way costs), in one run.
    This shared machine's speed swings from minute to minute, so the sustained rate and
    the baseline are measured side by side, ``PAIRS`` times; ``throughput_ratio_celery``
    is the mean of the pairs' ratios (each printed).
Brings up its own PostgreSQL, Redis and simulator; the bots run the echo app (one
inbound row, one outbox row and one event per message). Task events are off.

    .venv/bin/python bench/ingest.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2
import redis
from kombu import Connection, Exchange, Producer, Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from celery_baseline import run_baseline, worker_args  # noqa: E402
from telethon import events  # noqa: E402
from telethon.tl import types  # noqa: E402

from tgfleet.bots.runtime import bot_view, handler_for  # noqa: E402
from tgfleet.db import fleet, upgrade_database  # noqa: E402
from tgfleet.dev.processes import ProcessGroup  # noqa: E402
from tgfleet.dev.services import DevServices  # noqa: E402
from tgfleet.inbox import drain_chat, record_and_handle  # noqa: E402
from tgfleet.listeners.publisher import QueuedEnvelopes  # noqa: E402
from tgfleet.platform.envelope import decode, encode  # noqa: E402
from tgfleet.platform.handoff import CONSUMERS_KEY  # noqa: E402
from tgfleet.platform.settings import Settings, load_settings  # noqa: E402
from tgfleet.platform.telegram import make_client  # noqa: E402
from tgfleet.simulator import FloodLimits, SimulatorThread  # noqa: E402

#: Private chats the benchmark's traffic is spread over (one user per chat).
CHATS = 100
#: How many times (c) measures the sustained rate and the baseline, one right after the
#: other.
PAIRS = 2


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def count_rows(settings: Settings, bot_id: int, processed: bool = True) -> int:
    with psycopg2.connect(settings.owner_database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM messages WHERE bot_id = %s AND direction = 'in'"
            + (" AND processed_at IS NOT NULL" if processed else ""),
            (bot_id,),
        )
        return int(cur.fetchone()[0])


def handled_rate(settings: Settings, bot_id: int, since: Any = None) -> float:
    """Messages handled per second between the first and the last one (worker start-up
    excluded), from the rows' processed_at; only rows processed after ``since``."""
    with psycopg2.connect(settings.owner_database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), extract(epoch FROM max(processed_at) - min(processed_at)) "
            "FROM messages WHERE bot_id = %s AND direction = 'in' AND processed_at IS NOT NULL "
            "AND processed_at > coalesce(%s, '-infinity'::timestamptz)",
            (bot_id, since),
        )
        count, seconds = cur.fetchone()
    return (int(count) - 1) / float(seconds)


def database_now(settings: Settings) -> Any:
    with psycopg2.connect(settings.owner_database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT now()")
        return cur.fetchone()[0]


def sustained_rate(
    settings: Settings,
    sim: SimulatorThread,
    broker: redis.Redis,
    group: ProcessGroup,
    bot_id: int,
    users: list[int],
    n: int,
    handoff: str,
) -> float:
    """(c): N updates queued first, then drained by 2 fresh worker processes whose
    ``TGFLEET_BROKER_HANDOFF`` is ``handoff``; their handled/s."""
    broker.delete("updates")
    before = count_rows(settings, bot_id)
    for k in range(n):
        sim.send(users[k % len(users)], bot_id, "work")
    preloaded = QueuedEnvelopes(broker)
    wait_for(lambda: preloaded() >= n, 600, "the preload")
    since = database_now(settings)
    worker = group.celery(
        f"worker-handoff-{handoff}",
        *worker_args("updates"),
        extra_env={"TGFLEET_BROKER_HANDOFF": handoff},
    )
    wait_for(
        lambda: broker.llen("updates") == 0 and count_rows(settings, bot_id) >= before + n,
        900,
        "the workers",
        poll=0.2,
    )
    rate = handled_rate(settings, bot_id, since)
    worker.stop()
    return rate


def bare_kombu_rate(redis_url: str, payloads: list[dict[str, Any]]) -> float:
    """The same envelopes through a plain kombu producer: the upper bound for (a)."""
    queue = Queue("bench-bare", Exchange("bench-bare", "direct"), routing_key="bench-bare")
    with Connection(redis_url) as conn:
        producer = Producer(conn.channel(), serializer="json")
        queue(conn.channel()).declare()
        started = time.perf_counter()
        for payload in payloads:
            producer.publish(
                payload, exchange=queue.exchange, routing_key="bench-bare", declare=[queue]
            )
        elapsed = time.perf_counter() - started
        queue(conn.channel()).purge()
    return len(payloads) / elapsed


def monolith_rate(settings: Settings, sim: SimulatorThread, n: int) -> float:
    """One Telethon process: receive each update and do the handler work inline."""
    bot = sim.create_bot()
    users = [int(sim.create_user(f"Mono{i}")["id"]) for i in range(CHATS)]
    n -= n % CHATS
    fleet.save_bot(settings, bot["token"], name="mono", admin_chat_ids=[], app="echo")
    view = bot_view(settings, bot["id"])
    assert view is not None
    handler = handler_for(view)

    async def run() -> float:
        client = make_client(settings, None, receive_updates=True, sequential_updates=True)
        await client.start(bot_token=bot["token"])
        done = asyncio.Event()
        handled = 0

        async def on_update(update: Any) -> None:
            nonlocal handled
            envelope = decode(encode(bot["id"], update, update._entities.values()))
            _, first = record_and_handle(settings, envelope, handler)
            drain_chat(settings, bot["id"], envelope.chat_id, handler, first=first)
            handled += 1
            if handled == n:
                done.set()

        client.add_event_handler(on_update, events.Raw(types=[types.UpdateNewMessage]))
        await client.get_me()
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        for user_id in users:
            await asyncio.to_thread(sim.send, user_id, bot["id"], "mono", count=n // CHATS)
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
        await client.disconnect()
        return n / elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory(prefix="tgfleet-ingest-") as tmp:
        services = DevServices(Path(tmp))
        services.up()
        try:
            with SimulatorThread(limits=FloodLimits(enabled=False)) as sim:
                results = run(services, sim, Path(tmp), n, args.latency_seconds)
        finally:
            services.down()
    print_results(results, n)


def run(
    services: DevServices, sim: SimulatorThread, tmp: Path, n: int, latency_s: float
) -> dict[str, Any]:
    env = {**services.env(), **sim.env(tmp / "sim.pem")}
    os.environ.update(env)
    settings = load_settings(**env)
    upgrade_database(settings)
    broker = redis.Redis.from_url(settings.redis_url)
    bot = sim.create_bot()
    users = [int(sim.create_user(f"Bench{i}")["id"]) for i in range(CHATS)]
    users_a = [int(sim.create_user(f"Publish{i}")["id"]) for i in range(CHATS)]
    n -= n % CHATS
    fleet.save_bot(settings, bot["token"], name="bench", admin_chat_ids=[], app="echo")
    results: dict[str, Any] = {}
    child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    with ProcessGroup(tmp / "logs", child_env) as group:
        listener = group.start(
            "listener", [sys.executable, "-m", "tgfleet", "listen", "--bots", str(bot["id"])]
        )
        wait_for(
            lambda: "listening for bot" in listener.log_path.read_text(),
            60,
            "the listener",
            poll=0.1,
        )
        broker.delete("updates")
        # (a) the listener's publish rate, no consumer: time until N envelopes are queued
        started = time.perf_counter()
        # (a) has chats of its own: its envelopes are thrown away below, and a chat whose
        # earlier messages were never recorded makes its next ones wait CHAIN_STALL_S.
        for user_id in users_a:  # N messages over CHATS private chats
            sim.send(user_id, bot["id"], "hello", count=n // len(users_a))
        # Shown with the result: the feed must be far quicker than the listener, or (a)
        # would measure the simulator instead.
        results["feed_s"] = time.perf_counter() - started
        queued = QueuedEnvelopes(broker)  # a burst travels as tasks of up to 20 envelopes
        wait_for(lambda: queued() >= n, 600, "the listener's publishes")
        results["listener_s"] = time.perf_counter() - started
        results["listener_rate"] = n / results["listener_s"]
        payloads = queued.envelopes[:n]  # real envelopes, as the listener built them
        decode(payloads[0])
        results["bare_rate"] = bare_kombu_rate(settings.redis_url, payloads)
        # (c) sustained: 2 prefork worker processes drain N queued updates that arrived
        # interleaved over the chats, as real traffic does; once as tgfleet runs, then
        # with kombu's own BRPOP in place of the hand-off (TGFLEET_BROKER_HANDOFF=false),
        # which shows what the hand-off costs
        results["pairs"] = []
        for pair in range(PAIRS):
            rate = sustained_rate(settings, sim, broker, group, bot["id"], users, n, "true")
            baseline = run_baseline(env, tmp / f"baseline-{pair}", 3000)
            results["pairs"].append((rate, baseline["insert"]))
        results["sustained_rate"] = statistics.mean(rate for rate, _ in results["pairs"])
        results["brpop_rate"] = sustained_rate(
            settings, sim, broker, group, bot["id"], users, n, "false"
        )
        # Let (c) settle: updates that found their predecessor still in flight in the
        # other worker were handled by that worker's drain, and their safety-net retries
        # (CHAIN_STALL_S later) find nothing to do; (b) starts once they have run, on
        # workers as tgfleet runs them, once they consume.
        consumers = set(broker.zrange(CONSUMERS_KEY, 0, -1))
        group.celery("worker", *worker_args("updates"))
        wait_for(
            lambda: set(broker.zrange(CONSUMERS_KEY, 0, -1)) - consumers,
            60,
            "the workers",
            poll=0.1,
        )
        wait_for(
            lambda: broker.llen("updates") == 0 and broker.hlen("unacked") == 0,
            180,
            "(c)'s retries",
            poll=0.2,
        )
        # (b) latency at 200 msg/s: send time -> committed inbound row (created_at)
        results["latencies_ms"] = latency_run(
            sim, settings, broker, bot["id"], users, rate=200.0, seconds=latency_s
        )
    results["monolith_rate"] = monolith_rate(settings, sim, min(n, 2000))
    broker.close()
    return results


def latency_run(
    sim: SimulatorThread,
    settings: Settings,
    broker: redis.Redis,
    bot_id: int,
    users: list[int],
    rate: float,
    seconds: float,
) -> list[float]:
    # The simulator stands in for Telegram, whose servers are not on this machine: feed it
    # on its own loop (call_at, no HTTP request per message), so that pacing 200 msg/s
    # costs as little of the 2 shared cores as possible.
    sent: dict[int, float] = {}
    count = int(rate * seconds)

    def schedule() -> None:
        loop = asyncio.get_running_loop()
        first = loop.time() + 0.05

        def fire(user_id: int) -> None:
            message = sim.sim.user_send(user_id, bot_id, "latency")
            sent[message.id] = time.time()

        for k in range(count):
            loop.call_at(first + k / rate, fire, users[k % len(users)])

    sim.call(schedule)
    wait_for(lambda: len(sent) >= count, seconds + 60, "the latency run's sends", poll=0.05)
    ids = list(sent)

    def stored() -> bool:
        with psycopg2.connect(settings.owner_database_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM messages WHERE bot_id = %s AND tg_message_id = ANY(%s)",
                (bot_id, ids),
            )
            return int(cur.fetchone()[0]) >= len(ids)

    wait_for(stored, 300, "the latency run's rows", poll=0.2)
    with psycopg2.connect(settings.owner_database_url) as conn, conn.cursor() as cur:
        # created_at is now() of the inserting transaction: the row is committed right after
        cur.execute(
            "SELECT tg_message_id, extract(epoch FROM created_at) FROM messages "
            "WHERE bot_id = %s AND tg_message_id = ANY(%s)",
            (bot_id, ids),
        )
        return [max(0.0, (float(at) - sent[int(mid)]) * 1000) for mid, at in cur.fetchall()]


def print_results(r: dict[str, Any], n: int) -> None:
    lat = sorted(r["latencies_ms"])
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    celery_ratio = statistics.mean(rate / base for rate, base in r["pairs"])
    publish_ratio = r["listener_rate"] / r["bare_rate"]
    print(f"ingest benchmark ({n} messages, echo app, task events off, {os.cpu_count()} cores)")
    print(
        f"  (a) listener publishes:   {r['listener_rate']:8.0f} updates/s"
        f" ({n} in {r['listener_s']:.2f} s; feeding the simulator took {r['feed_s']:.2f} s)"
    )
    print(
        f"      bare kombu publishes: {r['bare_rate']:8.0f} msgs/s  -> ratio {publish_ratio:.2f}"
        " (goal >= 0.7)"
    )
    print(
        f"  (b) latency at 200 msg/s, Telegram -> committed row ({len(lat)} messages): "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (goal <= 30 / 200)"
    )
    for rate, base in r["pairs"]:
        print(
            f"  (c) sustained with 2 worker processes: {rate:8.0f} updates/s; right after, "
            f"celery one-INSERT baseline {base:.0f} tasks/s -> ratio {rate / base:.2f}"
        )
    print(f"      mean ratio to the baseline: {celery_ratio:.2f} (goal >= 1.0)")
    print(
        f"      the same with kombu's BRPOP:       {r['brpop_rate']:8.0f} updates/s -> "
        f"hand-off cost ratio {r['sustained_rate'] / r['brpop_rate']:.2f}"
    )
    print(
        f"      monolith (one Telethon process):   {r['monolith_rate']:8.0f} updates/s -> "
        f"ratio {r['sustained_rate'] / r['monolith_rate']:.2f}"
    )
    print(
        json.dumps(
            {
                "bench": "ingest",
                "publish_ratio": round(publish_ratio, 3),
                "latency_p50_ms": round(p50, 1),
                "latency_p99_ms": round(p99, 1),
                "throughput_ratio_celery": round(celery_ratio, 3),
                "throughput_ratio_monolith": round(r["sustained_rate"] / r["monolith_rate"], 3),
                "handoff_ratio_brpop": round(r["sustained_rate"] / r["brpop_rate"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
