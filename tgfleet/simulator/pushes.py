"""Pushes that do not arrive as sent: lost, held back, or replaced by ``updatesTooLong``.

Telegram does not promise to push every update. A listener learns it missed some in
three ways, and each makes Telethon call ``updates.getDifference``:

- a later push whose pts does not follow its own (a gap: Telethon waits 0.5 s for the
  missing ones, then fetches the difference) — ``lose_pushes``, and a hold released with
  ``then="drop"``;
- ``updatesTooLong``, which Telegram sends instead of updates it will not push one by one
  — a hold released with ``then="too_long"`` (the default), and a connection that has
  more updates waiting than ``SimulatorConfig.max_pending_updates`` (``connection``);
- nothing at all until the client asks (Telethon asks after 15 minutes without updates,
  or when it reconnects).

A hold may also end with ``then="deliver"``: the held pushes go out late, in order, as
after a slow network; a client that fetched the difference meanwhile ignores them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telethon.tl import types

from tgfleet.simulator.render import PushBatch

if TYPE_CHECKING:
    from tgfleet.simulator.connection import ClientConnection
    from tgfleet.simulator.server import Simulator

UPDATES_TOO_LONG = bytes(types.UpdatesTooLong())
RELEASE_MODES = ("too_long", "deliver", "drop")
# A "deliver" hold keeps at most this many updates; past it the release is "too_long".
MAX_HELD_UPDATES = 10_000


@dataclass
class Hold:
    """Pushes to one bot held back, and how they go out when the hold ends."""

    then: str
    updates: int = 0
    batches: list[tuple[PushBatch, ClientConnection | None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class PushFaults:
    """The push faults in force, per bot (lost pushes and holds)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.lost: dict[int, int] = {}
        self.holds: dict[int, Hold] = {}

    def intercept(self, bot_id: int, batch: PushBatch, exclude: ClientConnection | None) -> bool:
        """True when this push must not go out now (lost, or held)."""
        if self.lost.get(bot_id, 0) > 0:
            self.lost[bot_id] -= 1
            self.sim.stats["lost_pushes"] += 1
            return True
        hold = self.holds.get(bot_id)
        if hold is None:
            return False
        hold.updates += len(batch.updates)
        if hold.then == "deliver" and hold.updates <= MAX_HELD_UPDATES:
            hold.batches.append((batch, exclude))
        self.sim.stats["held_pushes"] += 1
        return True

    def hold(self, bot_id: int, seconds: float | None = None, then: str = "too_long") -> None:
        """Hold back every push to ``bot_id`` for ``seconds`` (None: until released), then
        release them as ``then`` says. Holding a held bot restarts its window."""
        if then not in RELEASE_MODES:
            raise ValueError(f"'then' must be one of {', '.join(RELEASE_MODES)}")
        hold = self.holds.get(bot_id)
        if hold is None:
            hold = self.holds[bot_id] = Hold(then)
        hold.then = then
        if hold.timer is not None:
            hold.timer.cancel()
            hold.timer = None
        if seconds is not None:
            loop = asyncio.get_running_loop()
            hold.timer = loop.call_later(seconds, self.release, bot_id)

    def release(self, bot_id: int, then: str | None = None) -> int:
        """End the hold on ``bot_id``; returns how many updates were held."""
        hold = self.holds.pop(bot_id, None)
        if hold is None:
            return 0
        if hold.timer is not None:
            hold.timer.cancel()
        mode = then or hold.then
        if mode not in RELEASE_MODES:
            raise ValueError(f"'then' must be one of {', '.join(RELEASE_MODES)}")
        if mode == "deliver" and hold.updates > MAX_HELD_UPDATES:
            mode = "too_long"
        bot = self.sim.world.bots.get(bot_id)
        if bot is None or not hold.updates:
            return hold.updates
        if mode == "too_long":
            for conn in self.sim.listeners(bot_id):
                conn.push_too_long()
        elif mode == "deliver":
            for batch, exclude in hold.batches:
                self.sim.push(bot, batch, exclude=exclude)
        self.sim.stats[f"holds_released_{mode}"] += 1
        return hold.updates
