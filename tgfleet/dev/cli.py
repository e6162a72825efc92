"""``tgfleet dev`` (project-local PostgreSQL + Redis) and ``tgfleet demo``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from tgfleet.dev.services import DevServices
from tgfleet.platform.settings import DevSettings


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="project-local PostgreSQL + Redis under .tgfleet/")
    dev.add_argument("action", choices=["up", "down", "status", "env"])
    dev.add_argument("--json", action="store_true", help="status as JSON")
    dev.set_defaults(func=cmd_dev, needs_settings=False)

    demo = sub.add_parser("demo", help="start everything locally and show it working")
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="run unattended for S seconds, then print a summary and stop",
    )
    demo.add_argument("--bots", type=int, default=3, help="matchmaking bots (first run)")
    demo.add_argument("--users", type=int, default=24, help="simulated users (first run)")
    demo.add_argument("--rate", type=float, default=15.0, help="user messages per second")
    demo.set_defaults(func=cmd_demo, needs_settings=False)


def cmd_dev(args: argparse.Namespace) -> int:
    services = DevServices(DevSettings().home)
    if args.action == "up":
        state = services.up()
        print(f"PostgreSQL {state.pg_major} on 127.0.0.1:{state.pg_port} (pid {state.pg_pid})")
        print(f"Redis on 127.0.0.1:{state.redis_port} (pid {state.redis_pid})")
        print(f'Run `eval "$(tgfleet dev env)"` to point tgfleet at them ({services.home}).')
    elif args.action == "down":
        stopped = services.down()
        print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    elif args.action == "status":
        status = services.status()
        if args.json:
            print(json.dumps(status))
        else:
            for name, info in status.items():
                word = "running" if info["running"] else "stopped"
                print(f"{name:<11} {word:<8} port {info['port'] or '-'} pid {info['pid'] or '-'}")
        return 0 if all(info["running"] for info in status.values()) else 1
    elif args.action == "env":
        if not services.state_file.exists():
            print("tgfleet: no dev services yet: run `tgfleet dev up` first", file=sys.stderr)
            return 1
        for key, value in services.env().items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tgfleet.dev.demo import DemoOptions, run_demo

    options = DemoOptions(duration=args.duration, bots=args.bots, users=args.users, rate=args.rate)
    return run_demo(DevSettings().home, options)
