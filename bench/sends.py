"""Benchmark the send path: outbox -> real sender workers -> the simulator.

In one run, against baselines that are not tgfleet:
(0) raw: one unmodified Telethon client in its own process sends to the simulator (limits
    off), 256 requests in flight: what the client can do on this machine
    (``raw_msgs_per_s``);
(a) one bot to 200 users, limits on: the steady rate vs Telegram's 30 messages/s per bot
    (``per_bot_ratio``, goal >= 0.95 with zero FLOOD_WAIT);
(b) 20 bots to 1,000 users with 2 sender processes, limits on: each bot broadcasts to its
    users (queued 50 rows a commit, so they go as ``deliver_batch`` tasks); the fleet rate
    vs min(20 x 30/s, raw) (``fleet_vs_limits``, goal >= 0.9), with FLOOD_WAITs and
    duplicate deliveries counted (goal 0);
(c) the same fleet with every limit off, each bot broadcasting 2,000 messages (40,000 in
    all, 20 s or so: a run of 8,000 lasted 4 s, too short to tell a 10% change), vs raw
    (``unlimited_raw_ratio``, goal >= 0.25);
(d) 20 bots schedule 10 sends each for one moment 4 s ahead (limits on): how late they
    arrive (``scheduled_late_p99_ms``, goal <= 1,000);
(e) one bot in paid broadcast mode (``tgfleet bots paid``, Stars enough) broadcasts to
    6,000 users, limits on: its rate over the whole broadcast less the paid bucket's burst
    vs min(Telegram's 1,000 msg/s, raw) (``paid_msgs_per_s``, ``paid_ratio``), with the
    Stars the simulator charged.

Rates are steady rates by the simulator's delivery timestamps: (a) over the second half
of the run (after every burst allowance is spent), (b) and (c) after the first fifth.

Starts its own PostgreSQL + Redis (tgfleet's dev services under a temporary home),
migrates, runs a simulator in a thread and the workers as
``celery -A tgfleet worker -Q sends -P threads -c 8``.

Run: ``.venv/bin/python bench/sends.py [--per-bot N] [--fleet-per-bot N] [--raw N]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tgfleet.db import (  # noqa: E402
    Bot,
    Entity,
    Outbox,
    OutboxStatus,
    PeerType,
    encrypt_secret,
    session_scope,
    upgrade_database,
)
from tgfleet.dev.processes import Child, ProcessGroup, child_environ  # noqa: E402
from tgfleet.dev.services import DevServices  # noqa: E402
from tgfleet.platform.celery_app import make_celery  # noqa: E402
from tgfleet.platform.names import SEND_METRICS  # noqa: E402
from tgfleet.platform.redis import redis_client  # noqa: E402
from tgfleet.platform.settings import Settings, load_settings  # noqa: E402
from tgfleet.sends.outbox import enqueue_deliveries, outbox_rows, queue_message  # noqa: E402
from tgfleet.sends.ratelimit import BOT_BURST_S, SAFETY  # noqa: E402
from tgfleet.simulator import SimulatorThread, new_client  # noqa: E402

BOT_LIMIT = 30.0
PAID_LIMIT = 1000.0
#: What tgfleet's paid bucket lets through at once (``acquire_paid``).
PAID_BURST = int(PAID_LIMIT * SAFETY * BOT_BURST_S)
RAW_WINDOW = 256
UNLIMITED = {"limits": {"bot_per_s": 1e6, "chat_per_s": 1e6, "chat_burst": 1000}}
DONE = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.DEAD)


def wait_for_log(child: Child, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in child.log_path.read_text(errors="replace"):
        if time.monotonic() > deadline or not child.alive:
            tail = child.log_path.read_text(errors="replace")[-2000:]
            raise SystemExit(f"bench: {child.name} did not start:\n{tail}")
        time.sleep(0.1)


class Bench:
    def __init__(self, settings: Settings, sim: SimulatorThread) -> None:
        self.settings = settings
        self.sim = sim

    def bots(self, count: int, bot_settings: dict[str, Any] | None = None) -> list[int]:
        ids = []
        for _ in range(count):
            bot = self.sim.create_bot()
            with session_scope(self.settings, role="admin") as s:
                s.add(
                    Bot(
                        id=bot["id"],
                        name=bot["username"],
                        settings=bot_settings or {},
                        token_encrypted=encrypt_secret(self.settings, bot["token"]),
                    )
                )
            ids.append(int(bot["id"]))
        return ids

    def seen(self, bot_id: int, users: list[int]) -> None:
        """The listener saw these users: their access hashes are in the entity store."""
        world = self.sim.sim.world
        hashes = self.sim.call(lambda: [world.access_hash(bot_id, u) for u in users])
        rows = [
            {"bot_id": bot_id, "peer_type": PeerType.USER, "peer_id": u, "access_hash": h}
            for u, h in zip(users, hashes, strict=True)
        ]
        with session_scope(self.settings, bot_id=bot_id) as s:
            s.execute(insert(Entity).values(rows).on_conflict_do_nothing())

    def queue(
        self,
        plan: dict[int, list[int]],
        tag: str,
        chunk: int = 1000,
        broadcast_id: int | None = None,
    ) -> int:
        """Queue the plan: each bot's rows in transactions of ``chunk`` (as ``tgfleet send``
        makes a broadcast's), their tasks enqueued once every row is written, as each
        commit would have enqueued them. Writing 10,000 rows takes the bench longer than
        sending them, so the rate measured is the fleet's, not this loop's."""
        commits: list[list[list[tuple[int, int, int]]]] = []
        for bot_id, chats in plan.items():
            mine = []
            for start in range(0, len(chats), chunk):
                part = chats[start : start + chunk]
                rows = [
                    outbox_rows(bot_id, chat, f"{tag} {start + n}", broadcast_id=broadcast_id)[0]
                    for n, chat in enumerate(part)
                ]
                with session_scope(self.settings, bot_id=bot_id) as s:
                    ids = s.scalars(insert(Outbox).values(rows).returning(Outbox.id)).all()
                mine.append([(i, bot_id, chat) for i, chat in zip(ids, part, strict=True)])
            commits.append(mine)
        # one commit's tasks at a time, the bots taking turns, as concurrent commits would
        deliveries = []
        for turn in itertools.zip_longest(*commits):
            for group in turn:
                if group:
                    enqueue_deliveries(group)
                    deliveries.extend(group)
        return len(deliveries)

    def warm_up(self, bot_ids: list[int], user: int, per_bot: int = 2) -> None:
        """``per_bot`` single messages per bot to ``user`` (each its own task, so every
        sender process is likely to connect the bot), and wait for them."""
        for bot_id in bot_ids:
            self.seen(bot_id, [user])
            for n in range(per_bot):
                with session_scope(self.settings, bot_id=bot_id) as s:
                    queue_message(s, bot_id, user, f"warm-up {n}")
        self.wait(bot_ids, len(bot_ids) * per_bot, timeout=120)

    def wait(self, bot_ids: list[int], total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with session_scope(self.settings, role="admin") as s:
                done = s.scalar(
                    select(func.count()).where(Outbox.bot_id.in_(bot_ids), Outbox.status.in_(DONE))
                )
            if (done or 0) >= total:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: only {done} of {total} sends finished in {timeout}s")
            # (the rates come from the simulator's delivery times, not from this poll; a
            # count over 40,000 rows took PostgreSQL 38 ms under the fleet's load, 5% of
            # its time at 5 polls a second)
            time.sleep(1.0)

    def delivery_times(self, bot_ids: list[int], users: list[int]) -> list[float]:
        wanted = set(bot_ids)
        return sorted(
            m["date"] for u in users for m in self.sim.received(u) if m["bot_id"] in wanted
        )


def scheduled_lateness(bench: Bench, users: list[int], warm: int, count: int) -> list[float]:
    """(d): 20 bots each schedule ``count`` sends (distinct users) for one moment 4 s
    ahead, as ``tgfleet send --at`` does; how late each arrived, in ms (limits on)."""
    bots = bench.bots(20)
    bench.warm_up(bots, warm)  # logged in, as a fleet's bots are
    at = datetime.now(UTC) + timedelta(seconds=4)
    for k, bot in enumerate(bots):
        chats = users[k * count : (k + 1) * count]
        bench.seen(bot, chats)
        with session_scope(bench.settings, bot_id=bot) as s:
            for chat in chats:
                queue_message(s, bot, chat, "scheduled", at=at)
    bench.wait(bots, 20 * count + 2 * len(bots), timeout=60)
    wanted = set(bots)
    dates = [m["date"] for u in users for m in bench.sim.received(u) if m["bot_id"] in wanted]
    return sorted((date - at.timestamp()) * 1000 for date in dates)


def raw_client_rate(sim: SimulatorThread, pem: Path, users: list[int], count: int) -> float:
    """(0): an unmodified Telethon client, in a process of its own as a sender is, sends
    ``count`` messages to ``users`` in turn with RAW_WINDOW in flight; its msgs/s."""
    bot = sim.create_bot()
    world = sim.sim.world
    hashes = sim.call(lambda: [world.access_hash(bot["id"], u) for u in users])
    job = {
        "host": sim.host,
        "port": sim.port,
        "pem": str(pem),
        "token": bot["token"],
        "peers": list(zip(users, hashes, strict=True)),
        "count": count,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--raw-client"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    received = sum(1 for u in users for m in sim.received(u) if m["bot_id"] == bot["id"])
    if received != count:
        raise SystemExit(f"bench: the raw client's users received {received} of {count}")
    return float(done.stdout.strip().splitlines()[-1])


async def raw_client(job: dict[str, Any]) -> float:
    from telethon.tl import functions, types

    client = new_client(
        job["host"], job["port"], job["pem"], receive_updates=False, flood_sleep_threshold=0
    )
    await client.start(bot_token=job["token"])
    peers = [types.InputPeerUser(u, h) for u, h in job["peers"]]
    window = asyncio.Semaphore(RAW_WINDOW)

    async def send(i: int) -> None:
        async with window:
            peer = peers[i % len(peers)]
            await client(functions.messages.SendMessageRequest(peer, f"raw {i}"))

    start = time.perf_counter()
    await asyncio.gather(*(send(i) for i in range(job["count"])))
    elapsed = time.perf_counter() - start
    await client.disconnect()
    return float(job["count"]) / elapsed


def steady_rate(times: list[float], skip: int = 0) -> float:
    """Messages per second between delivery ``skip`` and the last one."""
    window = times[skip:]
    return (len(window) - 1) / max(1e-6, window[-1] - window[0])


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    services = DevServices(home / "services")
    services.up()
    group: ProcessGroup | None = None
    try:
        env = services.env()
        settings = load_settings(**env)
        upgrade_database(settings)
        make_celery(settings)
        with SimulatorThread() as sim:
            sim_env = sim.env(home / "sim.pem")
            worker_env = child_environ(env, sim_env, {"PYTHONPATH": str(REPO)})
            group = ProcessGroup(args.logs or home / "logs", worker_env)
            argv = ["worker", "-Q", "sends", "-P", "threads", "-c", "8", "--without-mingle"]
            workers = [
                group.celery(f"sender{n}", *argv, "--without-gossip", "-n", f"bench{n}@%h")
                for n in (1, 2)
            ]
            for child in workers:
                wait_for_log(child, "ready.", 60)
            bench = Bench(settings, sim)
            users = [int(sim.create_user(f"u{i}")["id"]) for i in range(1000)]
            warm = int(sim.create_user("warm-up")["id"])

            # (0) the raw client, limits off
            sim.set_limits(enabled=False)
            raw_rate = raw_client_rate(
                sim, Path(sim_env["TG_SERVER_RSA_KEY_FILE"]), users, args.raw
            )
            sim.set_limits(enabled=True)

            # (a) one bot, 200 users, limits on
            [solo] = bench.bots(1)
            metrics = redis_client(settings.redis_url)
            metrics.delete(SEND_METRICS)
            bench.seen(solo, users[:200])
            plan = {solo: [users[i % 200] for i in range(args.per_bot)]}
            total = bench.queue(plan, "solo")
            bench.wait([solo], total, timeout=args.per_bot / 10 + 60)
            # The second half only: by then the bot's burst allowances are long spent.
            solo_rate = steady_rate(bench.delivery_times([solo], users[:200]), skip=total // 2)
            refused = int(metrics.hget(SEND_METRICS, "limiter_refusals") or 0)
            print(f"(a) the limiter refused {refused} of the {total} one-row sends at first")

            # (b) and (c): 20 bots, each broadcasting to 1,000 users' slice of its own
            def fleet(
                tag: str, bot_settings: dict[str, Any] | None, per_bot: int
            ) -> tuple[float, int]:
                bots = bench.bots(20, bot_settings)
                plan = {}
                for k, bot in enumerate(bots):
                    chats = [users[(k * 50 + i) % 1000] for i in range(per_bot)]
                    bench.seen(bot, sorted(set(chats)))
                    plan[bot] = chats
                # A fleet's bots are logged in long before a broadcast: a first login makes
                # an auth key (seconds of CPU on the sender's event loop), not measured here.
                bench.warm_up(bots, warm)
                total = bench.queue(plan, tag, chunk=50)
                bench.wait(bots, total + 2 * len(bots), timeout=total / 20 + 90)
                times = bench.delivery_times(bots, users)
                return steady_rate(times, skip=total // 5), len(times) - total

            fleet_rate, fleet_extra = fleet("fleet", None, args.fleet_per_bot)
            late_ms = scheduled_lateness(bench, users, warm, args.scheduled)

            # (e) one bot, paid broadcast mode, limits on
            budget = {"per_broadcast": 10_000, "per_day": 10_000}
            [payer] = bench.bots(1, {"paid_broadcasts": budget})
            sim.set_stars(payer, 10_000)
            more = [int(sim.create_user(f"p{i}")["id"]) for i in range(args.paid - len(users))]
            audience = (users + more)[: args.paid]
            bench.seen(payer, audience)
            bench.warm_up([payer], warm)
            total = bench.queue({payer: audience}, "paid", chunk=50, broadcast_id=1)
            bench.wait([payer], total + 2, timeout=total / 20 + 90)
            # Over the whole broadcast, less the paid bucket's burst: a window of it would
            # count the burst the bucket saved up while the sender was slower than the rate.
            times = bench.delivery_times([payer], audience)
            paid_rate = (len(times) - 1 - PAID_BURST) / (times[-1] - times[0])
            paid_charged = sim.bot(payer)["paid_messages"]
            flood_waits = sim.stats()["flood_errors"]
            counters = sim.stats()["counters"]
            sim.set_limits(enabled=False)
            free_rate, free_extra = fleet("free", UNLIMITED, args.free_per_bot)
            duplicates = (
                fleet_extra + free_extra + sim.stats()["counters"].get("duplicate_sends", 0)
            )
    finally:
        if group is not None:
            group.stop()
        services.down()
    ceiling = min(20 * BOT_LIMIT, raw_rate)
    return {
        "raw_rate": raw_rate,
        "solo_rate": solo_rate,
        "free_rate": free_rate,
        "fleet_rate": fleet_rate,
        "ceiling": ceiling,
        "per_bot_ratio": round(solo_rate / BOT_LIMIT, 3),
        "fleet_vs_limits": round(fleet_rate / ceiling, 3),
        "unlimited_raw_ratio": round(free_rate / raw_rate, 3),
        "flood_waits": flood_waits,
        "duplicates": duplicates,
        "late_ms": late_ms,
        "paid_rate": paid_rate,
        "paid_ratio": round(paid_rate / min(PAID_LIMIT, raw_rate), 3),
        "paid_charged": paid_charged,
        "differences": counters.get("differences", 0),
        "rpc_calls": counters.get("rpc_calls", 0),
    }


def main() -> None:
    if sys.argv[1:] == ["--raw-client"]:
        print(asyncio.run(raw_client(json.loads(sys.stdin.read()))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bot", type=int, default=600, help="(a) messages from one bot")
    parser.add_argument("--fleet-per-bot", type=int, default=400, help="(b) messages per bot")
    parser.add_argument("--free-per-bot", type=int, default=2000, help="(c) messages per bot")
    parser.add_argument("--raw", type=int, default=10_000, help="(0) the raw client's sends")
    parser.add_argument("--scheduled", type=int, default=10, help="(d) sends per bot")
    parser.add_argument("--paid", type=int, default=6000, help="(e) paid broadcast's users")
    parser.add_argument("--logs", type=Path, default=None, help="keep worker logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-sends-") as tmp:
        result = run(args, Path(tmp))
    print(f"(0) raw Telethon client, limits off: {result['raw_rate']:.0f} msg/s")
    print(
        f"(a) one bot: {result['solo_rate']:.1f} msg/s = {result['per_bot_ratio']:.3f} x the "
        f"{BOT_LIMIT:.0f}/s limit"
    )
    print(
        f"(b) 20 bots, limits on: {result['fleet_rate']:.1f} msg/s vs min(600/s, raw "
        f"{result['raw_rate']:.0f}/s) = {result['fleet_vs_limits']:.3f}x"
    )
    print(
        f"(c) 20 bots, limits off: {result['free_rate']:.1f} msg/s = "
        f"{result['unlimited_raw_ratio']:.3f}x raw"
    )
    late = result["late_ms"]
    late_p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
    print(
        f"(d) {len(late)} scheduled sends, 20 bots, one moment: late p50 "
        f"{late[len(late) // 2]:.0f} ms, p99 {late_p99:.0f} ms, earliest {late[0]:.0f} ms"
    )
    print(
        f"(e) one bot, paid broadcast: {result['paid_rate']:.1f} msg/s vs min(1,000/s, raw) = "
        f"{result['paid_ratio']:.3f}x; {result['paid_charged']} messages paid for "
        f"({result['paid_charged'] / 10:.1f} Stars)"
    )
    print(f"FLOOD_WAIT answered by the simulator: {result['flood_waits']}")
    print(f"duplicate deliveries: {result['duplicates']}")
    print(
        f"simulator (limits on): {result['rpc_calls']} calls, of them "
        f"{result['differences']} getDifference from the senders' clients"
    )
    summary = {
        "bench": "sends",
        "raw_msgs_per_s": round(result["raw_rate"], 1),
        "fleet_msgs_per_s": round(result["fleet_rate"], 1),
        "fleet_vs_limits": result["fleet_vs_limits"],
        "unlimited_raw_ratio": result["unlimited_raw_ratio"],
        "per_bot_ratio": result["per_bot_ratio"],
        "flood_waits": result["flood_waits"],
        "duplicates": result["duplicates"],
        "scheduled_late_p99_ms": round(late_p99, 1),
        "paid_msgs_per_s": round(result["paid_rate"], 1),
        "paid_ratio": result["paid_ratio"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
