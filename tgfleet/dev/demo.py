"""``tgfleet demo``: the whole platform on this machine, started and shown working.

It starts the embedded PostgreSQL + Redis, migrates the schema, starts tgfleet's
Telegram simulator with a few matchmaking bots and simulated users, a listener,
update and sender workers, beat and Flower (with generated credentials), and a
traffic generator of users going through the matchmaking flow, then shows a live
panel: updates/s, queue depths, p50/p99 latency from Telegram to a handled row,
replies delivered. Ctrl-C (or ``--duration``) stops what it started and prints a
summary. The services keep running for the next time (``tgfleet dev down``).

The processes it starts are supervised (``ProcessGroup`` with ``DEMO_RESTARTS``): one
that dies is started again with backoff, the panel counts restarts per process and a
line says when one stops and starts again, and the run goes on. Only a process that
keeps dying at start ends the demo (exit 1), with a line saying which and where its log
is. While PostgreSQL or Redis is unreachable the panel says so and keeps its last figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tgfleet.db import fleet, session_scope, upgrade_database
from tgfleet.dev.host import free_port, port_open
from tgfleet.dev.processes import ProcessEvent, ProcessEventKind, ProcessGroup
from tgfleet.dev.restarts import RestartPolicy
from tgfleet.dev.services import DevServices
from tgfleet.dev.traffic import NAMES, SimUser, TrafficGenerator, person
from tgfleet.ops.flower import flower_argv, flower_env, generate_password
from tgfleet.ops.ping import ping_round_trip
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.metrics import announced
from tgfleet.platform.names import QUEUES, SENDS_QUEUE, UPDATES_QUEUE
from tgfleet.platform.reachability import unreachable_service
from tgfleet.platform.settings import Settings, load_settings
from tgfleet.simulator import SimulatorClient

WORKER_QUEUES = ",".join(q for q in QUEUES if q != SENDS_QUEUE)
#: The demo's processes that serve Prometheus metrics (by their names in the group).
METRICS_PROCESSES = ("listener", "worker", "sender", "beat")
#: The languages of the simulated users' apps, in turn: the bots answer each in theirs.
LANGS = ("en", "en", "ru")
#: How the demo's processes are restarted: 1, 2, 4, 8 s after quick exits in a row, given
#: up on at the fifth; a process that ran 30 s was healthy and starts over at 0.5 s.
DEMO_RESTARTS = RestartPolicy(
    first_delay_s=0.5, factor=2.0, max_delay_s=30.0, stable_after_s=30.0, give_up_after=5
)


@dataclass
class DemoOptions:
    duration: float | None = None
    bots: int = 3
    users: int = 24
    rate: float = 15.0


@dataclass
class Stats:
    """What the panel shows, accumulated over the run."""

    started: float = field(default_factory=time.monotonic)
    handled: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    since: Any = None
    rate: float = 0.0
    outbox: dict[str, int] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)
    dead: int = 0
    #: Restarts per process so far, and every exit the supervisor restarted.
    restarts: dict[str, int] = field(default_factory=dict)
    exits: list[ProcessEvent] = field(default_factory=list)
    #: A service the last refresh could not reach (the panel shows its last figures).
    unreachable: str | None = None

    def percentile(self, q: float) -> float | None:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else None
        return statistics.quantiles(self.latencies_ms[-5000:], n=100)[int(q) - 1]


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.1)
    return False


def _first_ping(app: Any, group: ProcessGroup, timeout: float = 120) -> tuple[float, str]:
    """Round-trip a task, failing fast (with the log to read) if a process died."""
    deadline = time.monotonic() + timeout
    while True:
        dead = group.given_up() if group.restart is not None else group.dead()
        if dead:
            raise RuntimeError(
                f"{dead[0].name} keeps stopping (started {dead[0].restarts + 1} times); "
                f"see {dead[0].log_path}"
            )
        try:
            return ping_round_trip(app, timeout=5)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def _start_simulator(group: ProcessGroup, home: Path) -> tuple[SimulatorClient, dict[str, str]]:
    mtproto, control = free_port(), free_port()
    key = home / "simulator.pem"
    group.start(
        "simulator",
        [
            sys.executable,
            "-m",
            "tgfleet",
            "simulator",
            "run",
            "--port",
            str(mtproto),
            "--control-port",
            str(control),
            "--state",
            str(home / "simulator.json"),
            "--rsa-key-out",
            str(key),
        ],
    )
    if not _wait_port(control, 30) or not _wait_port(mtproto, 5):
        raise RuntimeError(f"the simulator did not start; see {group.log_dir / 'simulator.log'}")
    return SimulatorClient(f"http://127.0.0.1:{control}"), {
        "TG_SERVER": f"127.0.0.1:{mtproto}",
        "TG_SERVER_RSA_KEY_FILE": str(key),
    }


def _world(sim: SimulatorClient, settings: Settings, home: Path, options: DemoOptions) -> Any:
    """The demo's bots, admin and users: reused across runs while the simulator has them."""
    path = home / "demo-world.json"
    known = {int(bot["id"]) for bot in sim.bots()}
    if path.exists():
        world = json.loads(path.read_text())
        if all(bot_id in known for bot_id in world["bots"]):
            return world
    admin = int(sim.create_user("Admin", username="demo_admin")["id"])
    bots = []
    for n in range(options.bots):
        bot = sim.create_bot(username=f"demo{n}_match_bot")
        # A simulator without the last run's state hands out the same ids again: what
        # PostgreSQL kept for them (a session it never issued, update state, messages)
        # belongs to the old world.
        with contextlib.suppress(fleet.FleetError):
            fleet.remove_bot(settings, int(bot["id"]))
        fleet.save_bot(
            settings, bot["token"], name=bot["username"], admin_chat_ids=[admin], app="matchmaking"
        )
        bots.append(int(bot["id"]))
    langs = [LANGS[i % len(LANGS)] for i in range(options.users)]
    users = [
        [
            int(sim.create_user(NAMES[i % len(NAMES)], lang_code=lang)["id"]),
            bots[i % len(bots)],
            lang,
        ]
        for i, lang in enumerate(langs)
    ]
    world = {"admin": admin, "bots": bots, "users": users}
    path.write_text(json.dumps(world))
    return world


def _refresh(
    stats: Stats, settings: Settings, world: Any, traffic: TrafficGenerator, broker: redis.Redis
) -> None:
    """Read this second's figures; an unreachable service leaves the last ones standing."""
    try:
        _read_figures(stats, settings, world, traffic, broker)
    except (DBAPIError, redis.RedisError) as exc:
        outage = unreachable_service(exc, settings)
        if outage is None:
            raise
        stats.unreachable = f"{outage.service} unreachable ({outage.reason}); retrying"
    else:
        stats.unreachable = None


def _read_figures(
    stats: Stats, settings: Settings, world: Any, traffic: TrafficGenerator, broker: redis.Redis
) -> None:
    with session_scope(settings, role="admin") as session:
        rows = session.execute(
            text(
                "SELECT bot_id, tg_message_id, processed_at FROM messages "
                "WHERE bot_id = ANY(:bots) AND direction = 'in' AND processed_at IS NOT NULL "
                "AND processed_at > COALESCE(CAST(:since AS timestamptz), "
                "now() - interval '1 hour') ORDER BY processed_at"
            ),
            {"bots": world["bots"], "since": stats.since},
        ).all()
        stats.outbox = dict(
            session.execute(
                text(
                    "SELECT status::text, count(*) FROM outbox WHERE bot_id = ANY(:bots) "
                    "GROUP BY status"
                ),
                {"bots": world["bots"]},
            ).all()
        )
        stats.dead = int(
            session.execute(
                text("SELECT count(*) FROM dead_updates WHERE bot_id = ANY(:bots)"),
                {"bots": world["bots"]},
            ).scalar_one()
        )
    for bot_id, message_id, processed_at in rows:
        sent = traffic.sent_time(bot_id, int(message_id))
        if sent is not None:
            stats.latencies_ms.append(max(0.0, (processed_at.timestamp() - sent) * 1000))
        stats.since = processed_at
    stats.handled += len(rows)
    stats.rate = 0.7 * stats.rate + 0.3 * len(rows)  # per 1 s refresh, smoothed
    stats.queues = {q: int(broker.llen(q)) for q in (UPDATES_QUEUE, SENDS_QUEUE)}


def _metrics_urls(
    settings: Settings, group: ProcessGroup, timeout: float = 15.0
) -> list[tuple[str, str]]:
    """(process, URL) of the demo's processes that serve metrics, once each announced
    its endpoint (or after ``timeout``: those that did)."""
    if not settings.metrics_enabled:
        return []
    names = {c.process.pid: c.name for c in group.children if c.name in METRICS_PROCESSES}
    found = announced(settings, names, timeout)
    return sorted((names[pid], endpoint.url) for pid, endpoint in found.items())


def _panel(stats: Stats, traffic: TrafficGenerator, flower: str) -> Group:
    p50, p99 = stats.percentile(50), stats.percentile(99)
    table = Table(title="tgfleet demo", show_header=False, min_width=60)
    table.add_row("running for", f"{time.monotonic() - stats.started:.0f} s")
    table.add_row("messages sent by simulated users", str(traffic.sent))
    press = traffic.press_percentiles()
    table.add_row(
        "buttons pressed -> answered",
        f"{traffic.presses}"
        + ("" if press is None else f"  (p50 {press[0]:.0f} ms, p99 {press[1]:.0f} ms)"),
    )
    table.add_row("updates handled", f"{stats.handled}  ({stats.rate:.1f}/s)")
    table.add_row(
        "latency Telegram -> handled row",
        "-" if p50 is None else f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
    )
    table.add_row("queue depth", ", ".join(f"{q} {n}" for q, n in stats.queues.items()))
    table.add_row("replies delivered", str(stats.outbox.get("sent", 0)))
    table.add_row(
        "outbox waiting",
        str(sum(n for s, n in stats.outbox.items() if s in ("queued", "retrying", "sending"))),
    )
    table.add_row(
        "failed / dead sends", f"{stats.outbox.get('failed', 0)} / {stats.outbox.get('dead', 0)}"
    )
    table.add_row("dead-lettered updates", str(stats.dead))
    table.add_row(
        "process restarts",
        ", ".join(f"{name} {n}" for name, n in stats.restarts.items() if n) or "none",
    )
    if stats.unreachable:
        table.add_row("[red]services[/]", stats.unreachable)
    table.add_row("Flower", flower)
    return Group(table)


def run_demo(home: Path, options: DemoOptions) -> int:
    console = Console()
    services = DevServices(home)
    with console.status(f"starting PostgreSQL and Redis under {services.home}"):
        state = services.up()
        base_env = services.env(state)
        upgrade_database(load_settings(**base_env))
    console.print(
        f"[green]✓[/] PostgreSQL {state.pg_major} :{state.pg_port}, "
        f"Redis :{state.redis_port}, schema migrated ({services.home})"
    )
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    child_env = {**os.environ, **base_env}
    with ProcessGroup(services.home / "logs", child_env, restart=DEMO_RESTARTS) as group:
        sim, tg_env = _start_simulator(group, services.home)
        env = {**base_env, **tg_env}
        group.env.update(tg_env)
        settings = load_settings(**env)
        world = _world(sim, settings, services.home, options)
        console.print(
            f"[green]✓[/] simulator with {len(world['bots'])} matchmaking bots and "
            f"{len(world['users'])} users ({sim.base_url})"
        )
        password = generate_password()
        flower_port = free_port()
        group.start(
            "listener",
            [
                sys.executable,
                "-m",
                "tgfleet",
                "listen",
                "--bots",
                ",".join(map(str, world["bots"])),
            ],
        )
        group.celery("worker", "worker", "-Q", WORKER_QUEUES, "-c", "2", "-n", "demo@%h")
        group.celery(
            "sender",
            "worker",
            "-Q",
            SENDS_QUEUE,
            "-P",
            "threads",
            "-c",
            "8",
            "-n",
            "demo-sender@%h",
        )
        group.celery("beat", "beat", "--schedule", str(services.home / "celerybeat-schedule"))
        group.start("flower", flower_argv(flower_port), flower_env(settings.flower_user, password))
        with console.status("waiting for a worker to answer a task"):
            seconds, answer = _first_ping(make_celery(settings), group)
        console.print(f"[green]✓[/] task round trip: {answer} in {seconds * 1000:.0f} ms")
        for bot_id in world["bots"]:  # so the bots can reach their admin
            sim.send(world["admin"], bot_id, "/menu")
        flower = f"http://127.0.0.1:{flower_port} user {settings.flower_user} password {password}"
        console.print(f"[green]✓[/] Flower: {flower}  · logs: {group.log_dir}")
        served = "  ".join(f"{name} {url}" for name, url in _metrics_urls(settings, group))
        console.print(f"[green]✓[/] Prometheus metrics: {served or 'none (TGFLEET_METRICS=false)'}")
        users = [person(i, *user) for i, user in enumerate(world["users"])]
        users += [SimUser(world["admin"], bot_id, "Admin", admin=True) for bot_id in world["bots"]]
        traffic = TrafficGenerator(sim, users, options.rate)
        stats = Stats(since=datetime.now(UTC))  # this run's messages only
        traffic.start()
        broker = redis.Redis.from_url(settings.redis_url)
        gave_up = False
        try:
            with Live(
                _panel(stats, traffic, flower),
                console=console,
                refresh_per_second=2,
                transient=options.duration is not None,
            ) as live:
                while not stop and (
                    options.duration is None or time.monotonic() - stats.started < options.duration
                ):
                    if not _supervision(group, stats, live.console):
                        gave_up = True
                        break
                    time.sleep(1)
                    _refresh(stats, settings, world, traffic, broker)
                    live.update(_panel(stats, traffic, flower))
        except KeyboardInterrupt:
            pass
        finally:
            traffic.stop()
        _supervision(group, stats, console)
        console.print(_panel(stats, traffic, flower))
        console.print("stopping the listener, workers, beat, Flower and the simulator…")
    p50, p99 = stats.percentile(50), stats.percentile(99)
    console.print(
        ("[red]✗[/] demo ended early" if gave_up else "[green]✓[/] demo finished")
        + f": {stats.handled} updates handled, "
        f"{stats.outbox.get('sent', 0)} replies delivered, {traffic.presses} buttons pressed"
        + ("" if p50 is None else f", latency p50 {p50:.0f} ms p99 {p99:.0f} ms")
    )
    console.print(_restarts_summary(stats))
    return 1 if gave_up else 0


def _supervision(group: ProcessGroup, stats: Stats, console: Console) -> bool:
    """Show what the supervisor did since the last look; False once it gave up on one."""
    for event in group.take_events():
        if event.kind is ProcessEventKind.EXITED:
            stats.exits.append(event)
            console.print(f"[yellow]↻[/] {escape(event.describe())}")
        elif event.kind is ProcessEventKind.RESTARTED:
            console.print(f"[green]↻[/] {escape(event.describe())}")
        else:
            console.print(f"[red]✗[/] {escape(event.describe(group.restart))}")
    stats.restarts = {child.name: child.restarts for child in group.children}
    return not group.given_up()


def _restarts_summary(stats: Stats) -> str:
    if not stats.exits:
        return "[green]✓[/] no process had to be restarted"
    exits: dict[str, list[str]] = {}
    for e in stats.exits:
        exits.setdefault(e.name, []).append(f"{e.how} after {e.ran_for_s:.0f} s")
    each = ", ".join(f"{name} {len(why)} ({'; '.join(why)})" for name, why in exits.items())
    return f"[yellow]↻[/] processes restarted during the run: {escape(each)}"
