"""How a simulator is set up: addresses, persistence, limits, bounds and timeouts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tgfleet.simulator.limits import FloodLimits
from tgfleet.simulator.world import DEFAULT_HISTORY_LIMIT, DEFAULT_INBOX_LIMIT


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    control_port: int | None = 0
    state_path: Path | None = None
    rsa_key_out: Path | None = None
    limits: FloodLimits = field(default_factory=FloodLimits)
    history_limit: int = DEFAULT_HISTORY_LIMIT
    inbox_limit: int = DEFAULT_INBOX_LIMIT
    max_frame: int = 1024 * 1024
    save_interval: float = 1.0
    callback_timeout: float = 5.0  # how long a button press waits for the bot's answer
    # updates.getDifference answers at most this many pts updates, as a differenceSlice
    # when more are missing (Telethon asks again from its intermediate_state)
    difference_slice: int = 100
    # more updates than this waiting to be written to one connection are replaced by one
    # updatesTooLong (the client fetches them with getDifference); None: never
    max_pending_updates: int | None = 1000
