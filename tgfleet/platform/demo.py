"""``tgfleet demo``: the whole platform on this machine, started and shown working.

It starts the embedded PostgreSQL + Redis, a Celery worker, beat and Flower
(with generated credentials), round-trips a task through the worker and prints
where to look. Ctrl-C (or ``--duration``) stops everything it started.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.devservices import DevServices, free_port, port_open
from tgfleet.platform.flower import flower_argv, flower_env, generate_password
from tgfleet.platform.processes import ProcessGroup
from tgfleet.platform.settings import load_settings
from tgfleet.tasks.maintenance import ping_round_trip

WORKER_QUEUES = "updates,analytics,migration,maintenance"


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.1)
    return False


def run_demo(home: Path, duration: float | None) -> int:
    console = Console()
    services = DevServices(home)
    with console.status(f"starting PostgreSQL and Redis under {services.home}"):
        state = services.up()
    console.print(
        f"[green]✓[/] PostgreSQL {state.pg_major} :{state.pg_port}, "
        f"Redis :{state.redis_port} ({services.home})"
    )
    env = {**os.environ, **services.env(state)}
    settings = load_settings(**services.env(state))
    flower_port = free_port()
    password = generate_password()

    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    with ProcessGroup(services.home / "logs", env) as group:
        group.celery(
            "worker",
            "worker",
            "-Q",
            WORKER_QUEUES,
            "-c",
            "2",
            "-n",
            "demo@%h",
            "--loglevel",
            "INFO",
        )
        group.celery(
            "beat",
            "beat",
            "--schedule",
            str(services.home / "celerybeat-schedule"),
            "--loglevel",
            "INFO",
        )
        group.start("flower", flower_argv(flower_port), flower_env(settings.flower_user, password))
        with console.status("waiting for a worker to answer a task"):
            seconds, answer = ping_round_trip(make_celery(settings), timeout=60)
        console.print(f"[green]✓[/] task round trip: {answer} in {seconds * 1000:.0f} ms")
        flower_up = _wait_port(flower_port, 30)
        mark = "[green]✓[/]" if flower_up else "[red]✗[/]"
        console.print(
            f"{mark} Flower: http://127.0.0.1:{flower_port}  "
            f"user [bold]{settings.flower_user}[/] password [bold]{password}[/]"
        )
        console.print(f"  logs: {group.log_dir}")
        console.print(
            '  shell: eval "$(tgfleet dev env)" then `tgfleet ping`, '
            "`celery -A tgfleet inspect active`"
        )
        console.print(
            "Ctrl-C stops the demo's processes (the services keep running: `tgfleet dev down`)."
            if duration is None
            else f"running for {duration:.0f}s"
        )
        started = time.monotonic()
        try:
            while not stop and (duration is None or time.monotonic() - started < duration):
                dead = group.dead()
                if dead:
                    names = ", ".join(f"{c.name} (see {c.log_path})" for c in dead)
                    console.print(f"[red]✗[/] stopped unexpectedly: {names}")
                    return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        console.print("stopping worker, beat and Flower…")
    console.print("[green]✓[/] demo finished")
    sys.stdout.flush()
    return 0
