"""Bot API benchmark: simulator -> `tgfleet listen` -> update workers running real apps ->
sender -> simulator, one run, limits off (the simulator's and the bots' own send pacing),
so Telegram's rate limits do not cap it.

(a) plain text updates/s: users write to a bot that answers each message with one reply;
    the steady rate of handled updates (``processed_at`` of the inbound rows);
(b) button presses end to end at 100 presses/s: users press an inline button of the bot's
    /start reply (the control API, spread over users); press -> answer seen by the user,
    by the simulator's ``pressed_at``/``answered_at`` (goal p99 <= 150 ms);
(c) conversation steps/s: a 3-step conversation (``ctx.state.set``/``update_data``, one
    reply per step), many users at once, measured as (a); fsm_ratio = (c) / (a)
    (goal >= 0.8).
Brings up its own PostgreSQL, Redis and simulator; one listener for the three bots, 2
prefork update worker processes (bench/ingest.py's), one sender (threads). Task events
are off. The apps are bench/handlers_app.py. Prints the figures, then one JSON line.

    .venv/bin/python bench/handlers.py [--messages N] [--press-rate R] [--press-seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from celery_baseline import worker_args  # noqa: E402
from handlers_app import Pick  # noqa: E402

from tgfleet.db import fleet, upgrade_database  # noqa: E402
from tgfleet.dev.processes import Child, ProcessGroup, child_environ  # noqa: E402
from tgfleet.dev.services import DevServices  # noqa: E402
from tgfleet.platform.names import SENDS_QUEUE, UPDATES_QUEUE  # noqa: E402
from tgfleet.platform.queues import queue_states  # noqa: E402
from tgfleet.platform.settings import Settings, load_settings  # noqa: E402
from tgfleet.simulator import FloodLimits, SimulatorThread  # noqa: E402
from tgfleet.simulator.client import SimulatorApiError, SimulatorClient  # noqa: E402

GOAL_P99_MS = 150.0
GOAL_FSM_RATIO = 0.8
#: The bots' own send pacing, off (as bench/sends.py's unlimited fleet).
UNLIMITED = {"limits": {"bot_per_s": 1e6, "chat_per_s": 1e6, "chat_burst": 1000}}
#: The steady part of a burst: its handled updates between these fractions.
STEADY = (0.1, 0.9)
PRESS_TIMEOUT_S = 10.0
WORK_QUEUES = (UPDATES_QUEUE, SENDS_QUEUE)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


class Db:
    """Reads of the owner's connection (row-level security does not apply)."""

    def __init__(self, settings: Settings) -> None:
        self.conn = psycopg2.connect(settings.owner_database_url)
        self.conn.autocommit = True

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def scalar(self, sql: str, *params: Any) -> Any:
        return self.rows(sql, *params)[0][0]

    def last_inbound_id(self, bot: int) -> int:
        sql = "SELECT coalesce(max(id), 0) FROM messages WHERE bot_id = %s AND direction = 'in'"
        return int(self.scalar(sql, bot))

    def handled_since(self, bot: int, after_id: int) -> list[float]:
        """processed_at (epoch s) of the bot's inbound rows after ``after_id``, oldest first."""
        sql = (
            "SELECT extract(epoch FROM processed_at) FROM messages WHERE bot_id = %s "
            "AND direction = 'in' AND id > %s AND processed_at IS NOT NULL ORDER BY 1"
        )
        return [float(at) for (at,) in self.rows(sql, bot, after_id)]

    def handled_count(self, bot: int, after_id: int) -> int:
        sql = (
            "SELECT count(*) FROM messages WHERE bot_id = %s AND direction = 'in' "
            "AND id > %s AND processed_at IS NOT NULL"
        )
        return int(self.scalar(sql, bot, after_id))

    def idle(self, bots: list[int]) -> bool:
        """Every inbound row handled and every outbox row delivered (or given up)."""
        unhandled = self.scalar(
            "SELECT count(*) FROM messages WHERE bot_id = ANY(%s) AND direction = 'in' "
            "AND processed_at IS NULL",
            bots,
        )
        unsent = self.scalar(
            "SELECT count(*) FROM outbox WHERE bot_id = ANY(%s) "
            "AND status NOT IN ('sent', 'failed', 'dead')",
            bots,
        )
        return unhandled == 0 and unsent == 0


class CpuMeter:
    """CPU seconds by process group between two snapshots: where a phase's time went."""

    def __init__(self, groups: dict[str, list[Child]]) -> None:
        self.groups = groups

    @staticmethod
    def _tree_cpu(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                with_children = proc.cpu_times()
                total += with_children.user + with_children.system
            return total
        except psutil.Error:
            return 0.0

    def snapshot(self) -> dict[str, float]:
        snap = {
            name: sum(self._tree_cpu(c.process.pid) for c in children)
            for name, children in self.groups.items()
        }
        me = psutil.Process().cpu_times()
        snap["bench + simulator"] = me.user + me.system
        times = psutil.cpu_times()
        busy = ("user", "nice", "system", "irq", "softirq", "steal")  # guest is in user
        snap["_busy"] = sum(getattr(times, field, 0.0) for field in busy)
        snap["_wall"] = time.monotonic()
        return snap

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Cores used by each group over the interval (1.0 = one core busy throughout)."""
        wall = max(1e-6, after["_wall"] - before["_wall"])
        used = {k: (after[k] - before[k]) / wall for k in before if not k.startswith("_")}
        busy = (after["_busy"] - before["_busy"]) / wall
        used["postgres, redis, rest"] = max(0.0, busy - sum(used.values()))
        used["_total"] = busy
        return used


class Bench:
    def __init__(
        self, settings: Settings, sim: SimulatorThread, db: Db, broker: redis.Redis
    ) -> None:
        self.settings, self.sim, self.db, self.broker = settings, sim, db, broker
        self.bots: list[int] = []
        #: Inbound rows each bot should have by now: what was fed to it.
        self.fed: dict[int, int] = {}

    def add_bot(self, name: str, app: str) -> int:
        made = self.sim.create_bot(username=f"bench_{name}_bot")
        fleet.save_bot(self.settings, made["token"], name=name, admin_chat_ids=[], app=app)
        self.db.rows(
            "UPDATE bots SET settings = settings || %s::jsonb WHERE id = %s RETURNING id",
            json.dumps(UNLIMITED),
            made["id"],
        )
        self.bots.append(int(made["id"]))
        return int(made["id"])

    def feed(self, bot: int, users: list[int], rounds: int, text: Callable[[int], str]) -> None:
        """``rounds`` messages from each user, interleaved over the users as real traffic
        is; sent on the simulator's loop (no HTTP request per message), so that feeding
        costs the 2 shared cores as little as possible."""

        def send_all() -> None:
            for r in range(rounds):
                for user in users:
                    self.sim.sim.user_send(user, bot, text(r))

        self.sim.call(send_all)
        self.fed[bot] = self.fed.get(bot, 0) + rounds * len(users)

    def settle(self, timeout: float = 180.0) -> None:
        """Wait until the bots' work is done: every message fed recorded and handled,
        replies delivered, queues empty (the safety-net retries of updates drained by the
        other worker included)."""
        wait_for(
            lambda: (
                all(self.db.handled_count(b, 0) >= n for b, n in self.fed.items())
                and self.db.idle(self.bots)
            ),
            timeout,
            "the listener, the workers and the sender",
            poll=0.25,
        )
        try:
            wait_for(
                lambda: (
                    sum(q.depth for q in queue_states(self.broker, WORK_QUEUES)) == 0
                    and self.broker.hlen("unacked") == 0
                ),
                30,
                "the queues",
            )
        except SystemExit:
            print("  (note: tasks were still queued or unacked 30 s after the work was done)")

    def burst(self, bot: int, users: list[int], rounds: int, label: str) -> dict[str, Any]:
        """Handled updates/s of a burst of rounds x users messages, once steady."""
        after_id = self.db.last_inbound_id(bot)
        n = rounds * len(users)
        started = time.time()
        self.feed(bot, users, rounds, lambda r: f"{label} {r}")
        fed = time.time() - started
        wait_for(
            lambda: self.db.handled_count(bot, after_id) >= n,
            120 + n / 10,
            f"{n} {label} updates to be handled",
            poll=0.25,
        )
        times = self.db.handled_since(bot, after_id)
        lo, hi = int(n * STEADY[0]), int(n * STEADY[1]) - 1
        steady = (hi - lo) / max(1e-6, times[hi] - times[lo])
        return {
            "n": n,
            "rate": steady,
            "overall_rate": n / max(1e-6, times[-1] - started),
            "feed_s": fed,
        }

    def keyboards(self, bot: int, users: list[int]) -> dict[int, int]:
        """Each user sends /start and gets the keyboard: {user: its message id}."""
        self.feed(bot, users, 1, lambda _: "/start")
        found: dict[int, int] = {}
        deadline = time.monotonic() + 120
        while len(found) < len(users):
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {len(found)} of {len(users)} users got the keyboard")
            for user in users:
                if user not in found:
                    for m in self.sim.received(user, bot):
                        if (m.get("markup") or {}).get("inline"):
                            found[user] = int(m["message_id"])
            time.sleep(0.2)
        return found

    def presses(self, bot: int, keyboards: dict[int, int], rate: float, seconds: float) -> Any:
        """Presses at ``rate``/s for ``seconds``, each over the control API (which blocks
        until the bot answers or PRESS_TIMEOUT_S), users taking turns."""
        client = SimulatorClient(self.sim.base_url, timeout=PRESS_TIMEOUT_S + 10)
        users, count, data = list(keyboards), int(rate * seconds), Pick(n=1).pack()

        def press(user: int) -> dict[str, Any]:
            try:
                return client.press(user, bot, keyboards[user], data=data, timeout=PRESS_TIMEOUT_S)
            except (SimulatorApiError, OSError) as exc:
                return {"error": str(exc), "answered": False}

        with ThreadPoolExecutor(max_workers=64, thread_name_prefix="press") as pool:
            start = time.monotonic() + 0.1
            futures = []
            for k in range(count):
                delay = start + k / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(press, users[k % len(users)]))
            return [f.result(timeout=PRESS_TIMEOUT_S + 30) for f in futures]

    def press_stages(self, bot: int, answers: list[dict[str, Any]]) -> dict[str, list[float]]:
        """Each answered press split at its inbound row: press -> recorded by an update
        worker (listener, broker, worker pickup), recorded -> handling (the handling
        transaction's start: 0 when one transaction records and handles it), handled ->
        answer seen (the handler, commit, the sender's task, the answer call)."""
        done = {f"c:{a['query_id']}": a for a in answers if a.get("answered")}
        rows = self.db.rows(
            "SELECT payload ->> 'key', extract(epoch FROM created_at), "
            "extract(epoch FROM processed_at) FROM messages WHERE bot_id = %s "
            "AND direction = 'in' AND payload ->> 'key' = ANY(%s)",
            bot,
            list(done),
        )
        stages: dict[str, list[float]] = {"press -> recorded": [], "recorded -> handling": []}
        stages["handled -> answer seen"] = []
        for key, created, processed in rows:
            a = done[key]
            stages["press -> recorded"].append((float(created) - a["pressed_at"]) * 1000)
            stages["recorded -> handling"].append((float(processed) - float(created)) * 1000)
            stages["handled -> answer seen"].append((a["answered_at"] - float(processed)) * 1000)
        return stages


def start_processes(group: ProcessGroup, bots: list[int], log_level: str) -> CpuMeter:
    """One listener for the bots, 2 prefork update workers (bench/ingest.py's), one sender
    (threads); returns once the listener listens (the warm-up proves the workers). The
    workers log at ``log_level`` (TGFLEET_LOG_LEVEL: celery's --loglevel does not change
    it); the listener at INFO, which says when it listens."""
    quiet = {"TGFLEET_LOG_LEVEL": log_level}
    ids = ",".join(str(b) for b in bots)
    listener = group.start("listener", [sys.executable, "-m", "tgfleet", "listen", "--bots", ids])
    updates = group.celery(
        "updates", *worker_args("updates"), "-n", "bench-updates@%h", extra_env=quiet
    )
    sender = group.celery(
        "sender",
        *("worker", "-Q", "sends", "-P", "threads", "-c", "4", "-n", "bench-sends@%h"),
        *("--without-mingle", "--without-gossip", "--loglevel", "WARNING"),
        extra_env=quiet,
    )
    for bot in bots:
        wait_for(
            lambda b=bot: f"listening for bot {b}" in listener.log_path.read_text(),
            60,
            f"the listener (bot {bot})",
        )
    return CpuMeter({"listener": [listener], "update workers": [updates], "sender": [sender]})


def run(args: argparse.Namespace, home: Path, sim: SimulatorThread) -> dict[str, Any]:
    services = DevServices(home / "services")
    services.up()
    group: ProcessGroup | None = None
    try:
        env = {**services.env(), **sim.env(home / "sim.pem")}
        settings = load_settings(**env)
        upgrade_database(settings)
        db, broker = Db(settings), redis.Redis.from_url(settings.redis_url)
        bench = Bench(settings, sim, db, broker)
        text_bot = bench.add_bot("text", "handlers_app:text")
        button_bot = bench.add_bot("buttons", "handlers_app:buttons")
        order_bot = bench.add_bot("order", "handlers_app:order")
        users = [int(sim.create_user(f"Bench{i}")["id"]) for i in range(args.press_users)]
        chat_users = users[: args.users]
        child_env = child_environ(env, {"PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"})
        group = ProcessGroup(args.logs or home / "logs", child_env)
        meter = start_processes(group, bench.bots, args.log_level)
        # Warm-up, not measured: each user's first messages (entities, users, the workers'
        # app and client caches; a whole conversation for the order bot). Settling waits
        # for every reply to be sent, so it proves the workers and the sender are up.
        bench.feed(text_bot, chat_users, 1, lambda r: "hello")
        bench.feed(order_bot, chat_users, 3, lambda r: f"warm-up {r}")
        bench.settle(timeout=240)
        results: dict[str, Any] = {}
        cpu: dict[str, dict[str, float]] = {}
        completed_sql = (
            "SELECT count(*) FROM outbox WHERE bot_id = %s AND status = 'sent' "
            "AND text LIKE 'Ordered:%%'"
        )
        completed_before = int(db.scalar(completed_sql, order_bot))
        # Text before and after the conversation (the mean), so that neither gains from
        # running first on a colder system or later on a fuller database.
        phases = (("text", text_bot), ("fsm", order_bot), ("text2", text_bot))
        for name, bot in phases:
            before = meter.snapshot()
            results[name] = bench.burst(bot, chat_users, args.messages // len(chat_users), name)
            cpu[name] = CpuMeter.spent(before, meter.snapshot())
            bench.settle()
        results["fsm"]["completed"] = int(db.scalar(completed_sql, order_bot)) - completed_before
        keyboards = bench.keyboards(button_bot, users)
        bench.settle()
        bench.presses(button_bot, keyboards, args.press_rate, 2.0)  # warm-up, not counted
        bench.settle()
        before = meter.snapshot()
        answers = bench.presses(button_bot, keyboards, args.press_rate, args.press_seconds)
        cpu["presses"] = CpuMeter.spent(before, meter.snapshot())
        bench.settle()
        results["presses"] = answers
        results["stages"] = bench.press_stages(button_bot, answers)
        results["dead"] = int(
            db.scalar("SELECT count(*) FROM dead_updates WHERE bot_id = ANY(%s)", bench.bots)
        )
        results["sim_stats"] = sim.stats()
        results["cpu"] = cpu
        results["dead_processes"] = [c.name for c in group.dead()]
        broker.close()
        db.conn.close()
        return results
    except BaseException:
        for child in group.children if group is not None else []:
            tail = child.log_path.read_text(errors="replace")[-1500:]
            print(f"--- {child.name} ({child.log_path}), the end of its log:\n{tail}")
        raise
    finally:
        if group is not None:
            group.stop()
        services.down()


def report(r: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    fsm, texts = r["fsm"], (r["text"], r["text2"])
    text = {
        "rate": statistics.mean(t["rate"] for t in texts),
        "overall_rate": statistics.mean(t["overall_rate"] for t in texts),
    }
    answers = r["presses"]
    answered = [a for a in answers if a.get("answered")]
    latencies = [(a["answered_at"] - a["pressed_at"]) * 1000 for a in answered]
    # a press never answered counts as the slowest there is
    latencies += [PRESS_TIMEOUT_S * 1000] * (len(answers) - len(answered))
    pressed = sorted(a["pressed_at"] for a in answers if "pressed_at" in a)
    press_rate = (len(pressed) - 1) / max(1e-6, pressed[-1] - pressed[0])
    p50, p99 = statistics.median(latencies), pct(latencies, 0.99)
    ratio = fsm["rate"] / text["rate"]
    met_p99, met_ratio = p99 <= GOAL_P99_MS, ratio >= GOAL_FSM_RATIO
    print(
        f"handlers benchmark ({os.cpu_count()} cores; 2 prefork update workers, 1 sender; "
        f"limits off; task events off; workers' log level {args.log_level})"
    )
    print(
        f"  (a) plain text: {text['rate']:7.0f} updates/s steady, the mean of "
        f"{texts[0]['rate']:.0f} before and {texts[1]['rate']:.0f} after (c) "
        f"({texts[0]['n']} messages from {args.users} users each time; "
        f"{text['overall_rate']:.0f}/s overall, fed in {texts[0]['feed_s']:.2f} s)"
    )
    print(
        f"  (b) button presses: {len(answers)} at {press_rate:.0f}/s over {args.press_users} "
        f"users, {len(answered)} answered: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"(goal p99 <= {GOAL_P99_MS:.0f} ms: {'met' if met_p99 else 'NOT met'})"
    )
    for stage, values in r["stages"].items():
        print(f"      {stage:24s} p50 {pct(values, 0.5):7.1f} ms  p99 {pct(values, 0.99):7.1f} ms")
    print(
        f"  (c) 3-step conversation: {fsm['rate']:7.0f} steps/s steady ({fsm['n']} steps, "
        f"{fsm['completed']} of {fsm['n'] // 3} conversations completed; "
        f"{fsm['overall_rate']:.0f}/s overall)"
    )
    print(
        f"      fsm_ratio = {ratio:.2f} (goal >= {GOAL_FSM_RATIO}: "
        f"{'met' if met_ratio else 'NOT met'})"
    )
    print("  cores used by phase (of 2):")
    for phase, used in r["cpu"].items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in used.items() if not k.startswith("_"))
        print(f"      {phase:8s} total {used['_total']:.2f}: {parts}")
    timeouts = r["sim_stats"].get("counters", {}).get("callback_timeouts", 0)
    print(
        f"  dead updates: {r['dead']}; presses the simulator timed out: {timeouts}; "
        f"processes that died: {', '.join(r['dead_processes']) or 'none'}"
    )
    return {
        "bench": "handlers",
        "text_updates_per_s": round(text["rate"], 1),
        "callback_p50_ms": round(p50, 1),
        "callback_p99_ms": round(p99, 1),
        "callback_rate_per_s": round(press_rate, 1),
        "callback_unanswered": len(answers) - len(answered),
        "fsm_steps_per_s": round(fsm["rate"], 1),
        "fsm_ratio": round(ratio, 3),
        "goal_callback_p99_met": met_p99,
        "goal_fsm_ratio_met": met_ratio,
        "log_level": args.log_level,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="(a) and (c) messages each")
    parser.add_argument("--users", type=int, default=100, help="(a) and (c) users")
    parser.add_argument("--press-rate", type=float, default=100.0)
    parser.add_argument("--press-seconds", type=float, default=18.0)
    parser.add_argument("--press-users", type=int, default=200)
    parser.add_argument(
        "--log-level", default="INFO", help="TGFLEET_LOG_LEVEL of the workers (INFO: default)"
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs here")
    args = parser.parse_args()
    if args.press_users < args.users:
        parser.error("--press-users must be at least --users")
    with (
        tempfile.TemporaryDirectory(prefix="tgfleet-bench-handlers-") as tmp,
        SimulatorThread(limits=FloodLimits(enabled=False)) as sim,
    ):
        results = run(args, Path(tmp), sim)
    print(json.dumps(report(results, args)))


if __name__ == "__main__":
    main()
