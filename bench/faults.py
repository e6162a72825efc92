"""Fault-injection benchmark: users' messages are answered once each, whatever dies.

On the local services (PostgreSQL, Redis) and the simulator: 5 bots run the echo app,
250 simulated users write to them. Each run sends ``--messages`` messages (default 1,000,
at ``--rate`` 100/s), each expecting its reply, and injects one fault 40% of the way
through the sends:

- ``worker``: SIGKILL of an update worker (its pool too), the most common run: one that
  holds a message unacknowledged at that instant, when one does within 3 s;
- ``sender``: SIGKILL of the sender;
- ``listener``: SIGKILL of the listener holding the bots (a second one takes over);
- ``redis``: Redis stopped and started again;
- ``postgres``: PostgreSQL stopped for ``--pg-down`` seconds (30), then started again.

Processes run as the demo runs them, under its supervisor (a process that exits is
started again with backoff; nobody restarts anything by hand): 2 listeners, 2 update
workers (``-Q updates -c 2``), a sender (``-Q sends -P threads -c 8``) and beat with a
maintenance worker.

Counted through the simulator (what users received) and the database (what was
recorded and handled), per run: sent, recorded, handled, replied, ``lost`` (never
answered within ``--settle`` seconds after the fault), ``duplicate_effects`` (a message
whose handler wrote its reply twice), ``duplicate_deliveries`` (a user who got one reply
twice), ``out_of_order`` (a user whose replies came in another order than their
messages), ``chain_gaps`` (messages that ran without an earlier one of their chat, each a
dead letter), ``recovery_s``: from the end of the fault (or the last send, if later)
to the last reply, and ``max_delay_s``: the slowest reply, from the user's message.
``manual_restarts`` counts processes the supervisor gave up on.

Goal (issue #16): 0 lost, 0 duplicates, 0 manual restarts, recovery <= 20 s.

Run: ``.venv/bin/python bench/faults.py [--runs 20] [--messages 1000] [--faults worker,...]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg2
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from e2e import wait_for  # noqa: E402  (bench/, this script's folder)

from tgfleet.db import fleet, upgrade_database  # noqa: E402
from tgfleet.dev.processes import (  # noqa: E402
    Child,
    ProcessEventKind,
    ProcessGroup,
    child_environ,
)
from tgfleet.dev.restarts import RestartPolicy  # noqa: E402
from tgfleet.dev.services import DevServices, restart_postgres, restart_redis  # noqa: E402
from tgfleet.platform.handoff import CONSUMERS_KEY, held_key  # noqa: E402
from tgfleet.platform.lease import LeaseStore  # noqa: E402
from tgfleet.platform.settings import Settings, load_settings  # noqa: E402
from tgfleet.simulator import SimulatorThread  # noqa: E402

BOTS = 5
USERS_PER_BOT = 50
#: The faults of a default run, in turn: the update worker most often.
SCHEDULE = (
    "worker",
    "worker",
    "sender",
    "worker",
    "listener",
    "worker",
    "redis",
    "worker",
    "postgres",
    "worker",
)
FAULTS = ("worker", "sender", "listener", "redis", "postgres")


@dataclass
class Run:
    n: int
    fault: str
    sent: int
    recorded: int
    handled: int
    replied: int
    lost: int
    duplicate_effects: int
    duplicate_deliveries: int
    out_of_order: int
    chain_gaps: int
    recovery_s: float
    max_delay_s: float


def log_count(children: list[Child], needle: str) -> int:
    return sum(c.log_path.read_text(errors="replace").count(needle) for c in children)


class Fleet:
    """The services, the simulator, the bots and users, and the supervised processes."""

    def __init__(self, home: Path, sim: SimulatorThread, services: DevServices) -> None:
        self.home, self.sim, self.services = home, sim, services
        env = services.env()
        self.settings: Settings = load_settings(**env)
        upgrade_database(self.settings)
        bots = [sim.create_bot() for _ in range(BOTS)]
        self.bot_ids = [int(bot["id"]) for bot in bots]
        for bot in bots:
            fleet.save_bot(
                self.settings, bot["token"], name=bot["username"], admin_chat_ids=[], app="echo"
            )
        self.pairs = [
            (int(sim.create_user(f"u{k}-{i}")["id"]), int(bot["id"]))
            for i in range(USERS_PER_BOT)
            for k, bot in enumerate(bots)
        ]
        child_env = child_environ(env, sim.env(home / "sim.pem"), {"PYTHONPATH": str(REPO)})
        policy = RestartPolicy(first_delay_s=0.5, max_delay_s=5.0, stable_after_s=10.0)
        self.group = ProcessGroup(home / "logs", child_env, restart=policy)
        quiet = ["--without-mingle", "--without-gossip", "--loglevel", "WARNING"]
        listen = [sys.executable, "-m", "tgfleet", "listen"]
        self.listeners = [self.group.start(f"listener{n}", listen) for n in (1, 2)]
        updates = ["worker", "-Q", "updates", "-c", "2", *quiet]
        self.workers = [
            self.group.celery(f"updates{n}", *updates, "-n", f"updates{n}@%h") for n in (1, 2)
        ]
        sends = ["worker", "-Q", "sends", "-P", "threads", "-c", "8", *quiet]
        self.sender = self.group.celery("sender", *sends, "-n", "sender@%h")
        maintenance = ["worker", "-Q", "maintenance", "-c", "1", *quiet, "-n", "maint@%h"]
        self.group.celery("maintenance", *maintenance)
        self.group.celery("beat", "beat", "--loglevel", "WARNING")
        wait_for(
            lambda: log_count(self.listeners, "listening for bot") >= BOTS, 180, "the listeners"
        )
        self.sent_at: dict[str, float] = {}
        self.restarted: Counter[str] = Counter()
        #: Worker kills that took a message the worker held unacknowledged with them.
        self.killed_holding = 0

    # -- traffic ----------------------------------------------------------------------
    def offer(self, texts: list[str], rate: float) -> float:
        """Schedule ``texts`` at ``rate``/s on the simulator's loop; returns when the
        first goes (time.time())."""
        pairs, sent_at, sim = self.pairs, self.sent_at, self.sim
        start = time.time() + 0.1

        def schedule() -> None:
            loop = asyncio.get_running_loop()
            first = loop.time() + 0.1

            def fire(k: int) -> None:
                user_id, bot_id = pairs[k % len(pairs)]
                sim.sim.user_send(user_id, bot_id, texts[k])
                sent_at[texts[k]] = time.time()

            for k in range(len(texts)):
                loop.call_at(first + k / rate, fire, k)

        sim.call(schedule)
        return start

    def received(self, texts: list[str]) -> tuple[dict[str, list[float]], dict[int, list[str]]]:
        """Per text, when each copy of its reply arrived; per user, the texts in arrival order."""
        wanted = set(texts)
        users = {user_id for user_id, _ in self.pairs}

        def collect() -> tuple[dict[str, list[float]], dict[int, list[str]]]:
            world = self.sim.sim.world
            times: dict[str, list[float]] = defaultdict(list)
            order: dict[int, list[str]] = defaultdict(list)
            for user_id in users:
                for item in world.users[user_id].received:
                    if item.text in wanted:
                        times[item.text].append(item.date)
                        order[user_id].append(item.text)
            return dict(times), dict(order)

        result: tuple[dict[str, list[float]], dict[int, list[str]]] = self.sim.call(collect)
        return result

    def database_counts(self, prefix: str, since: float) -> tuple[int, int, int, int]:
        """(recorded, handled, duplicate effects) of the messages whose text starts so,
        and the chain gaps dead-lettered since ``since``."""
        like = f"{prefix}%"
        with psycopg2.connect(self.settings.owner_database_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), count(processed_at) FROM messages "
                "WHERE direction = 'in' AND text LIKE %s",
                (like,),
            )
            recorded, handled = cur.fetchone()
            cur.execute(
                "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM outbox "
                "WHERE text LIKE %s GROUP BY bot_id, chat_id, text HAVING count(*) > 1) d",
                (like,),
            )
            (duplicates,) = cur.fetchone()
            cur.execute(
                "SELECT count(*) FROM dead_updates WHERE payload ->> 'kind' = 'chain_gap' "
                "AND created_at > to_timestamp(%s)",
                (since,),
            )
            (gaps,) = cur.fetchone()
        return int(recorded), int(handled), int(duplicates), int(gaps)

    # -- faults -----------------------------------------------------------------------
    def inject(self, fault: str, pg_down_s: float) -> float:
        """Inject ``fault``; returns when it ended (time.time())."""
        if fault == "worker":
            self._kill(self._busy_worker())
        elif fault == "sender":
            self._kill(self.sender)
        elif fault == "listener":
            self._kill(self._lease_holder())
        elif fault == "redis":
            restart_redis(self.services, downtime=1.0)
        elif fault == "postgres":
            restart_postgres(self.services, downtime=pg_down_s)
        else:
            raise SystemExit(f"bench: unknown fault {fault!r} (one of {', '.join(FAULTS)})")
        return time.time()

    def _kill(self, child: Child) -> None:
        os.killpg(child.process.pid, signal.SIGKILL)

    def _busy_worker(self, within_s: float = 3.0) -> Child:
        """The update worker to kill: one that holds a message unacknowledged right now
        (its consumer's held set in Redis), so that the kill takes something with it;
        the first worker if none does within ``within_s``."""
        client = redis.Redis.from_url(self.settings.redis_url)
        by_pid = {child.process.pid: child for child in self.workers}
        deadline = time.monotonic() + within_s
        try:
            while time.monotonic() < deadline:
                for raw in client.zrange(CONSUMERS_KEY, 0, -1):
                    consumer = raw.decode()
                    pid = int(consumer.split(":")[1])
                    if pid in by_pid and client.scard(held_key(consumer)):
                        self.killed_holding += 1
                        return by_pid[pid]
                time.sleep(0.002)
        finally:
            client.close()
        return self.workers[0]

    def _lease_holder(self) -> Child:
        client = redis.Redis.from_url(self.settings.redis_url)
        try:
            holder = LeaseStore(client, "bench").holder(self.bot_ids[0])
        finally:
            client.close()
        if holder is None:
            raise SystemExit("bench: no listener holds the first bot's lease")
        pid = int(holder[0].split(":")[1])
        for child in self.listeners:
            if child.process.pid == pid:
                return child
        raise SystemExit(f"bench: the lease holder (pid {pid}) is not one of the listeners")

    def settle_supervision(self) -> list[str]:
        """The supervisor's restarts since the last call: which process, how it ended."""
        done = []
        for event in self.group.take_events():
            if event.kind == ProcessEventKind.EXITED:
                done.append(f"{event.name} ({event.how})")
            elif event.kind == ProcessEventKind.RESTARTED:
                self.restarted[event.name] += 1
        return done


def one_run(fleet_: Fleet, n: int, fault: str, args: argparse.Namespace) -> Run:
    texts = [f"r{n}-{k}" for k in range(args.messages)]
    send_s = len(texts) / args.rate
    start = fleet_.offer(texts, args.rate)
    time.sleep(max(0.0, start + 0.4 * send_s - time.time()))
    fault_ended = fleet_.inject(fault, args.pg_down)
    wait_for(lambda: all(t in fleet_.sent_at for t in texts), send_s + 60, "the run's sends")
    deadline = time.monotonic() + args.settle
    times: dict[str, list[float]] = {}
    order: dict[int, list[str]] = {}
    while time.monotonic() < deadline:
        times, order = fleet_.received(texts)
        if len(times) == len(texts):
            break
        time.sleep(0.5)
    time.sleep(2.0)  # late duplicates, if any, arrive
    times, order = fleet_.received(texts)
    recorded, handled, duplicate_effects, gaps = fleet_.database_counts(f"r{n}-", start)
    exits = fleet_.settle_supervision()
    if exits:
        print(f"    the supervisor restarted: {', '.join(exits)}")
    rank = {text: k for k, text in enumerate(texts)}
    swapped = [
        got for got in order.values() if [rank[t] for t in got] != sorted(rank[t] for t in got)
    ]
    out_of_order = len(swapped)
    if swapped and os.environ.get("TGFLEET_BENCH_VERBOSE"):
        print(f"    e.g. replies in the order {swapped[0]}")
    last_send = max(fleet_.sent_at[t] for t in texts)
    last_reply = max((min(v) for v in times.values()), default=last_send)
    return Run(
        n=n,
        fault=fault,
        sent=len(texts),
        recorded=recorded,
        handled=handled,
        replied=len(times),
        lost=len(texts) - len(times),
        duplicate_effects=duplicate_effects,
        duplicate_deliveries=sum(len(v) - 1 for v in times.values()),
        out_of_order=out_of_order,
        chain_gaps=gaps,
        recovery_s=round(max(0.0, last_reply - max(fault_ended, last_send)), 2),
        max_delay_s=round(
            max((min(v) - fleet_.sent_at[t] for t, v in times.items()), default=0.0), 2
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s a run sends")
    parser.add_argument("--faults", default=None, help=f"comma list of {', '.join(FAULTS)}")
    parser.add_argument("--pg-down", type=float, default=30.0, help="PostgreSQL outage, s")
    parser.add_argument("--settle", type=float, default=120.0, help="wait for replies, s")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the logs here")
    args = parser.parse_args()
    schedule = tuple(args.faults.split(",")) if args.faults else SCHEDULE
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-faults-") as tmp:
        home = Path(tmp)
        services = DevServices(home / "services")
        services.up()
        fleet_: Fleet | None = None
        try:
            with SimulatorThread() as sim:
                fleet_ = Fleet(home, sim, services)
                print(
                    f"{BOTS} bots, {BOTS * USERS_PER_BOT} users; {args.runs} runs of "
                    f"{args.messages} messages at {args.rate:.0f}/s, one fault each",
                    flush=True,
                )
                for n in range(args.runs):
                    run = one_run(fleet_, n, schedule[n % len(schedule)], args)
                    runs.append(run)
                    print(
                        f"  run {n + 1:2d} {run.fault:9s}: {run.replied}/{run.sent} replied, "
                        f"recorded {run.recorded}, handled {run.handled}, lost {run.lost}, "
                        f"dup effects {run.duplicate_effects}, dup deliveries "
                        f"{run.duplicate_deliveries}, out of order {run.out_of_order}, "
                        f"chain gaps {run.chain_gaps}, "
                        f"recovered in {run.recovery_s:.1f} s, slowest reply "
                        f"{run.max_delay_s:.1f} s",
                        flush=True,
                    )
                given_up = [child.name for child in fleet_.group.given_up()]
                restarted = fleet_.restarted
                killed_holding = fleet_.killed_holding
        finally:
            if fleet_ is not None:
                fleet_.group.stop()
            services.down()
            if args.keep_logs is not None:
                shutil.copytree(home / "logs", args.keep_logs, dirs_exist_ok=True)
    by_fault: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_fault[run.fault].append(run)
    print("by fault:")
    for fault, group in by_fault.items():
        print(
            f"  {fault:9s} {len(group):2d} runs: lost {sum(r.lost for r in group)}, "
            f"max recovery {max(r.recovery_s for r in group):.1f} s, slowest reply "
            f"{max(r.max_delay_s for r in group):.1f} s"
        )
    workers_killed = sum(1 for run in runs if run.fault == "worker")
    print(f"update workers killed while holding a message: {killed_holding} of {workers_killed}")
    print(
        f"supervisor restarts: {sum(restarted.values())} ({dict(restarted)}); "
        f"given up on: {given_up or 'none'}"
    )
    summary = {
        "bench": "faults",
        "runs": len(runs),
        "messages_per_run": args.messages,
        "faults": dict(Counter(run.fault for run in runs)),
        "sent": sum(r.sent for r in runs),
        "replied": sum(r.replied for r in runs),
        "lost": sum(r.lost for r in runs),
        "duplicate_effects": sum(r.duplicate_effects for r in runs),
        "duplicate_deliveries": sum(r.duplicate_deliveries for r in runs),
        "out_of_order": sum(r.out_of_order for r in runs),
        "chain_gaps": sum(r.chain_gaps for r in runs),
        "max_recovery_s": max((r.recovery_s for r in runs), default=0.0),
        "max_reply_delay_s": max((r.max_delay_s for r in runs), default=0.0),
        "manual_restarts": len(given_up),
        "workers_killed_holding": killed_holding,
        "supervisor_restarts": sum(restarted.values()),
    }
    if os.environ.get("TGFLEET_BENCH_RUNS_JSON"):
        Path(os.environ["TGFLEET_BENCH_RUNS_JSON"]).write_text(
            json.dumps([asdict(r) for r in runs], indent=1)
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
