"""``python -m tgfleet.simulator run ...`` (and the ``tgfleet simulator`` sub-command)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from tgfleet.simulator.config import SimulatorConfig
from tgfleet.simulator.limits import FloodLimits
from tgfleet.simulator.server import Simulator

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulator run`` to a parent CLI's sub-parsers; dispatch with :func:`main`."""
    parser = subparsers.add_parser("simulator", help="run the local Telegram simulator")
    _configure(parser)


def _configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="simulator_command", required=True)
    run = commands.add_parser("run", help="serve MTProto and the control API until stopped")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    run.add_argument("--port", type=int, default=0, help="MTProto port (0: pick a free one)")
    run.add_argument("--control-port", type=int, default=0, help="HTTP control API port")
    run.add_argument("--state", type=Path, help="JSON file the state persists in")
    run.add_argument("--rsa-key-out", type=Path, help="write the public key PEM here")
    run.add_argument("--no-limits", action="store_true", help="disable flood limits")
    run.add_argument("--history-limit", type=int, default=10_000, help="pts history per bot")
    run.add_argument(
        "--difference-slice", type=int, default=100, help="updates per getDifference answer"
    )
    run.add_argument(
        "--max-pending-updates",
        type=int,
        default=1000,
        help="updates waiting for one connection before it gets updatesTooLong (0: never)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def main(args: argparse.Namespace) -> int:
    config = SimulatorConfig(
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        state_path=args.state,
        rsa_key_out=args.rsa_key_out,
        limits=FloodLimits(enabled=not args.no_limits),
        history_limit=args.history_limit,
        difference_slice=args.difference_slice,
        max_pending_updates=args.max_pending_updates or None,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))
    return 0


async def _serve(config: SimulatorConfig) -> None:
    sim = Simulator(config)
    await sim.start()
    if not config.limits.enabled:  # --no-limits wins over limits kept in the state file
        sim.set_limits(enabled=False)
    print(
        f"tgfleet simulator: mtproto={config.host}:{sim.port} control={sim.control_url}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def run_cli(argv: list[str]) -> int:
    """Entry point for ``python -m tgfleet.simulator``; configures logging."""
    parser = argparse.ArgumentParser(prog="tgfleet-simulator", description=__doc__)
    _configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return main(args)
