"""Benchmark the send path: outbox -> real sender workers -> the simulator (limits on).

(a) one bot to 200 users: the achieved steady rate vs Telegram's 30 messages/s per bot
    (goal >= 0.95x with zero FLOOD_WAIT);
(b) 20 bots to 1,000 users with 2 sender processes: the aggregate rate vs
    min(20 x 30/s, the same sends with every limit off, measured in the same run).
    The bots' messages are queued interleaved (5 at a time per bot), as a fleet's
    concurrent conversations and broadcasts are; when one bot's backlog exceeds its own
    30/s, every message of it is re-queued once to its slot, which costs a task hop.

Rates are steady rates by the simulator's delivery timestamps: (a) over the second half
of the run (after every burst allowance is spent), (b) after the first fifth.

Starts its own PostgreSQL + Redis (tgfleet's dev services under a temporary home),
migrates, runs a simulator in a thread and the workers as
``celery -A tgfleet worker -Q sends -P threads -c 8``.

Run: ``.venv/bin/python bench/sends.py [--per-bot N] [--fleet-per-bot N]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
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
from tgfleet.dev.processes import Child, ProcessGroup  # noqa: E402
from tgfleet.dev.services import DevServices  # noqa: E402
from tgfleet.platform.celery_app import make_celery  # noqa: E402
from tgfleet.platform.settings import Settings, load_settings  # noqa: E402
from tgfleet.sends.outbox import queue_message  # noqa: E402
from tgfleet.simulator import SimulatorThread  # noqa: E402

BOT_LIMIT = 30.0
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

    def queue(self, plan: dict[int, list[int]], tag: str, chunk: int = 1000) -> int:
        """Queue the plan, bots taking turns every ``chunk`` messages (as concurrent
        broadcasts and conversations of a fleet interleave)."""
        longest = max(len(chats) for chats in plan.values())
        for start in range(0, longest, chunk):
            for bot_id, chats in plan.items():
                with session_scope(self.settings, bot_id=bot_id) as s:
                    for n in range(start, min(start + chunk, len(chats))):
                        queue_message(s, bot_id, chats[n], f"{tag} {n}")
        return sum(len(c) for c in plan.values())

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
            time.sleep(0.2)

    def delivery_times(self, bot_ids: list[int], users: list[int]) -> list[float]:
        wanted = set(bot_ids)
        return sorted(
            m["date"] for u in users for m in self.sim.received(u) if m["bot_id"] in wanted
        )


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
            pem = sim.write_rsa_key(home / "sim.pem")
            worker_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("TGFLEET_", "TG_"))},
                **env,
                "PYTHONPATH": str(REPO),
                "TG_SERVER": f"{sim.host}:{sim.port}",
                "TG_SERVER_RSA_KEY_FILE": str(pem),
            }
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

            # (a) one bot, 200 users, limits on
            [solo] = bench.bots(1)
            bench.seen(solo, users[:200])
            plan = {solo: [users[i % 200] for i in range(args.per_bot)]}
            total = bench.queue(plan, "solo")
            bench.wait([solo], total, timeout=args.per_bot / 10 + 60)
            # The second half only: by then the bot's burst allowances are long spent.
            solo_rate = steady_rate(bench.delivery_times([solo], users[:200]), skip=total // 2)

            # (b) 20 bots, 1,000 users: first with every limit off (the ceiling), then on
            def fleet(tag: str, bot_settings: dict[str, Any] | None) -> float:
                bots = bench.bots(20, bot_settings)
                plan = {}
                for k, bot in enumerate(bots):
                    chats = [users[(k * 50 + i) % 1000] for i in range(args.fleet_per_bot)]
                    bench.seen(bot, sorted(set(chats)))
                    plan[bot] = chats
                total = bench.queue(plan, tag, chunk=5)
                bench.wait(bots, total, timeout=total / 20 + 90)
                return steady_rate(bench.delivery_times(bots, users), skip=total // 5)

            # The ceiling is measured before and after (the mean), so neither side gains
            # from running first on a warm or an emptier system.
            sim.set_limits(enabled=False)
            free_before = fleet("free1", UNLIMITED)
            sim.set_limits(enabled=True)
            fleet_rate = fleet("fleet", None)
            flood_waits = sim.stats()["flood_errors"]
            sim.set_limits(enabled=False)
            free_after = fleet("free2", UNLIMITED)
            unlimited_rate = (free_before + free_after) / 2
    finally:
        if group is not None:
            group.stop()
        services.down()
    ceiling = min(20 * BOT_LIMIT, unlimited_rate)
    return {
        "solo_rate": solo_rate,
        "unlimited_rate": unlimited_rate,
        "free_rates": (free_before, free_after),
        "fleet_rate": fleet_rate,
        "ceiling": ceiling,
        "per_bot_ratio": round(solo_rate / BOT_LIMIT, 3),
        "fleet_ratio": round(fleet_rate / ceiling, 3),
        "flood_waits": flood_waits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bot", type=int, default=600, help="(a) messages from one bot")
    parser.add_argument("--fleet-per-bot", type=int, default=150, help="(b) messages per bot")
    parser.add_argument("--logs", type=Path, default=None, help="keep worker logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-sends-") as tmp:
        result = run(args, Path(tmp))
    print(
        f"(a) one bot: {result['solo_rate']:.1f} msg/s = {result['per_bot_ratio']:.3f} x the "
        f"{BOT_LIMIT:.0f}/s limit"
    )
    print(
        f"(b) 20 bots: {result['fleet_rate']:.1f} msg/s vs min(600/s, limits off "
        f"{result['unlimited_rate']:.1f}/s) = {result['fleet_ratio']:.3f}x (limits off, "
        "before and after: {:.1f}/s, {:.1f}/s)".format(*result["free_rates"])
    )
    print(f"FLOOD_WAIT answered by the simulator: {result['flood_waits']}")
    summary = {
        "bench": "sends",
        "per_bot_ratio": result["per_bot_ratio"],
        "fleet_ratio": result["fleet_ratio"],
        "flood_waits": result["flood_waits"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
