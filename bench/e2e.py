"""End-to-end benchmark: simulated users -> listener -> update workers -> handler ->
outbox -> senders -> users, with Telegram's limits on.

20 bots run the echo app (each message answered with itself, one outbox row and one event
per message); 2,000 simulated users (100 per bot) write to them. The offered load rises in
steps (messages/s over all bots, spread evenly over the users, each step ``--step-s``
seconds); a step passes when every reply arrived, p99 update-to-reply (the user's send ->
the reply stored by the simulator) is at most 1 s, and the replies kept up (their rate over
the step at least 95% of the offered one). The bench stops at the first step that fails and
reports the last one that passed: ``max_replies_per_s``, its ``p50_ms`` and ``p99_ms``.

The ceiling is Telegram's: 20 bots x 30 msg/s = 600 replies/s (every per-chat limit is
respected: a user writes at most once every 3 s). The same run is made twice: with the
embedded PostgreSQL's dev settings (fsync, synchronous_commit and full_page_writes off)
and, with ``--durable`` (the default runs both), as production runs it
(``max_replies_per_s_durable``).

Processes, as a deployment runs them: ``tgfleet listen`` (every bot), 2 update workers
(``-Q updates -c 2 -P prefork``), 2 senders (``-Q sends -P threads -c 8``), PostgreSQL,
Redis; the simulator runs in this process on a thread of its own.

Run: ``.venv/bin/python bench/e2e.py [--steps 100,200,...] [--step-s S] [--only dev|durable]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tgfleet.db import fleet, upgrade_database  # noqa: E402
from tgfleet.dev.processes import Child, ProcessGroup, child_environ  # noqa: E402
from tgfleet.dev.services import DevServices  # noqa: E402
from tgfleet.platform.settings import load_settings  # noqa: E402
from tgfleet.simulator import SimulatorThread  # noqa: E402

BOTS = 20
USERS_PER_BOT = 100
BOT_LIMIT = 30.0
P99_GOAL_S = 1.0
KEEP_UP = 0.95


@dataclass
class Step:
    offered: float
    sent: int
    replied: int
    rate: float
    p50_ms: float
    p99_ms: float

    @property
    def passed(self) -> bool:
        return (
            self.replied == self.sent
            and self.p99_ms <= P99_GOAL_S * 1000
            and self.rate >= KEEP_UP * self.offered
        )


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(poll)


def logged(child: Child, needle: str, count: int = 1) -> bool:
    if not child.alive:
        tail = child.log_path.read_text(errors="replace")[-2000:]
        raise SystemExit(f"bench: {child.name} exited:\n{tail}")
    return child.log_path.read_text(errors="replace").count(needle) >= count


class Traffic:
    """Users writing to bots at a set rate, fed on the simulator's own loop, and the
    replies they got, read straight from the simulator's world."""

    def __init__(self, sim: SimulatorThread, pairs: list[tuple[int, int]]) -> None:
        self.sim = sim
        self.pairs = pairs  # (user_id, bot_id)
        self.sent: dict[str, float] = {}
        self._next = 0

    def offer(self, rate: float, seconds: float) -> list[str]:
        """Send ``rate`` messages/s for ``seconds``, the users taking turns; their texts."""
        count = int(rate * seconds)
        texts = [f"m{self._next + k}" for k in range(count)]
        self._next += count
        sent = self.sent

        def schedule() -> None:
            loop = asyncio.get_running_loop()
            first = loop.time() + 0.05

            def fire(k: int) -> None:
                user_id, bot_id = self.pairs[k % len(self.pairs)]
                self.sim.sim.user_send(user_id, bot_id, texts[k])
                sent[texts[k]] = time.time()

            for k in range(count):
                loop.call_at(first + k / rate, fire, k)

        self.sim.call(schedule)
        wait_for(lambda: all(t in sent for t in texts[-1:]), seconds + 60, "the step's sends")
        return texts

    def replies(self, texts: list[str]) -> dict[str, float]:
        """When each of ``texts`` came back (the simulator's delivery time)."""
        wanted = set(texts)
        users = {user_id for user_id, _ in self.pairs}

        def collect() -> dict[str, float]:
            world = self.sim.sim.world
            found = {}
            for user_id in users:
                for item in world.users[user_id].received:
                    if item.text in wanted:
                        found[item.text] = item.date
            return found

        result: dict[str, float] = self.sim.call(collect)
        return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run_step(traffic: Traffic, rate: float, seconds: float) -> Step:
    texts = traffic.offer(rate, seconds)
    deadline = time.monotonic() + seconds + 30
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        got = traffic.replies(texts)
        if len(got) == len(texts):
            break
        time.sleep(0.5)
    latencies = [got[t] - traffic.sent[t] for t in texts if t in got]
    if not latencies:
        return Step(rate, len(texts), 0, 0.0, float("inf"), float("inf"))
    first = min(traffic.sent[t] for t in texts)
    span = max(got.values()) - first
    return Step(
        offered=rate,
        sent=len(texts),
        replied=len(got),
        rate=len(got) / max(span, 1e-6),
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000 if len(got) == len(texts) else float("inf"),
    )


def run(home: Path, steps: list[float], step_s: float, durable: bool) -> list[Step]:
    services = DevServices(home / "services", durable=durable)
    services.up()
    group: ProcessGroup | None = None
    try:
        env = services.env()
        settings = load_settings(**env)
        upgrade_database(settings)
        with SimulatorThread() as sim:
            child_env = child_environ(env, sim.env(home / "sim.pem"), {"PYTHONPATH": str(REPO)})
            bots = [sim.create_bot() for _ in range(BOTS)]
            for bot in bots:
                fleet.save_bot(
                    settings, bot["token"], name=bot["username"], admin_chat_ids=[], app="echo"
                )
            # the users of every bot take turns, so that each step spreads evenly over them
            pairs = [
                (int(sim.create_user(f"u{k}-{i}")["id"]), int(bot["id"]))
                for i in range(USERS_PER_BOT)
                for k, bot in enumerate(bots)
            ]
            group = ProcessGroup(home / "logs", child_env)
            quiet = ["--without-mingle", "--without-gossip", "--loglevel", "WARNING"]
            listener = group.start("listener", [sys.executable, "-m", "tgfleet", "listen"])
            updates = ["worker", "-Q", "updates", "-c", "2", "-P", "prefork", *quiet]
            group.celery("updates", *updates, "-n", "updates@%h")
            sends = ["worker", "-Q", "sends", "-P", "threads", "-c", "8", *quiet]
            for n in (1, 2):
                group.celery(f"sender{n}", *sends, "-n", f"sender{n}@%h")
            wait_for(lambda: logged(listener, "listening for bot", BOTS), 180, "the listener")
            traffic = Traffic(sim, pairs)
            # Warm-up: every bot answers a few users (logins, caches), not measured.
            warm = run_step(traffic, 40.0, 3.0)
            if warm.replied != warm.sent:
                raise SystemExit(f"bench: warm-up got {warm.replied} of {warm.sent} replies")
            results = []
            for rate in steps:
                step = run_step(traffic, rate, step_s)
                results.append(step)
                verdict = "ok" if step.passed else "FAILS"
                print(
                    f"  offered {rate:5.0f}/s: {step.replied}/{step.sent} replies at "
                    f"{step.rate:5.1f}/s, p50 {step.p50_ms:6.0f} ms, p99 {step.p99_ms:6.0f} ms "
                    f"{verdict}",
                    flush=True,
                )
                if not step.passed:
                    break
                time.sleep(1.0)
            flood = sim.stats()["flood_errors"]
            if flood:
                print(f"  the simulator answered {flood} FLOOD_WAIT")
            sends = redis.Redis.from_url(env["REDIS_URL"]).hgetall("tgfleet:metrics:sends")
            rounds, batched = int(sends.get(b"ready_rounds", 0)), int(sends.get(b"batched", 0))
            print(
                f"  {batched} replies went in {rounds} rounds of the bots' ready-sends tasks "
                f"({batched / max(rounds, 1):.2f} a round, over every step)"
            )
            return results
    finally:
        if group is not None:
            group.stop()
        services.down()


def best(steps: list[Step]) -> Step | None:
    passed = [step for step in steps if step.passed]
    return max(passed, key=lambda step: step.rate) if passed else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", default="50,75,100,125,150,200,250,300,400,500,550", help="offered msgs/s"
    )
    parser.add_argument("--step-s", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--only", choices=["dev", "durable"], default=None)
    args = parser.parse_args()
    steps = [float(value) for value in args.steps.split(",")]
    found: dict[str, Step | None] = {}
    for mode in ("dev", "durable"):
        if args.only not in (None, mode):
            continue
        print(f"{mode} PostgreSQL ({BOTS} bots, {BOTS * USERS_PER_BOT} users, echo app):")
        with tempfile.TemporaryDirectory(prefix=f"tgfleet-bench-e2e-{mode}-") as tmp:
            found[mode] = best(run(Path(tmp), steps, args.step_s, durable=mode == "durable"))
    summary: dict[str, Any] = {"bench": "e2e", "bots": BOTS, "users": BOTS * USERS_PER_BOT}
    for mode, step in found.items():
        suffix = "" if mode == "dev" else "_durable"
        if step is None:
            print(f"{mode}: no step passed")
            summary[f"max_replies_per_s{suffix}"] = 0.0
            continue
        print(
            f"{mode}: {step.rate:.1f} replies/s sustained (offered {step.offered:.0f}/s), "
            f"p50 {step.p50_ms:.0f} ms, p99 {step.p99_ms:.0f} ms; Telegram allows "
            f"{BOTS * BOT_LIMIT:.0f}/s"
        )
        summary[f"max_replies_per_s{suffix}"] = round(step.rate, 1)
        summary[f"p50_ms{suffix}"] = round(step.p50_ms, 1)
        summary[f"p99_ms{suffix}"] = round(step.p99_ms, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
