"""Simulated users going through the matchmaking flow, for the demo and benchmarks.

Each simulated user walks a script (/start, set a profile, a photo, /browse, /like,
/skip...) against one bot, through the simulator's control API, at a target rate
across all users. ``sent_at`` maps each message (bot id, message id) to the moment
it left, so latencies can be measured from the rows the workers commit.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tgfleet.simulator import SimulatorClient

NAMES = ("Ann", "Bob", "Cleo", "Dan", "Eve", "Finn", "Gia", "Hal", "Ivy", "Jon", "Kai", "Lea")
CITIES = ("Berlin", "Lisbon", "Oslo", "Kyiv", "Turin", "Leeds", "Ghent", "Bern")


@dataclass
class SimUser:
    user_id: int
    bot_id: int
    name: str
    step: int = 0
    seen: list[int] = field(default_factory=list)

    def next_message(self, rng: random.Random, peers: list[int]) -> tuple[str, bool]:
        """(text, is_photo) of this user's next action."""
        script = [
            ("/start", False),
            (f"/set name {self.name}", False),
            (f"/set age {rng.choice(['twenty', str(rng.randint(18, 60))])}", False),
            (f"/set city {rng.choice(CITIES)}", False),
            ("", True),
            (f"/set bio likes {rng.choice(['hiking', 'jazz', 'chess', 'bikes'])}", False),
        ]
        if self.step < len(script):
            action = script[self.step]
        else:
            target = rng.choice(peers) if peers else self.user_id
            action = rng.choice(
                [
                    ("/browse", False),
                    (f"/like {target}", False),
                    ("/skip", False),
                    ("/profile", False),
                ]
            )
        self.step += 1
        return action


class TrafficGenerator:
    """Sends the users' messages at ``rate`` per second from a background thread."""

    def __init__(self, sim: SimulatorClient, users: list[SimUser], rate: float, seed: int = 7):
        self.sim = sim
        self.users = users
        self.rate = rate
        self.rng = random.Random(seed)
        self.sent = 0
        self.errors = 0
        #: (bot id, message id) -> wall-clock time it was sent (for latency).
        self.sent_at: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tgfleet-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        peers: dict[int, list[int]] = {}
        for user in self.users:
            peers.setdefault(user.bot_id, []).append(user.user_id)
        while not self._stop.is_set():
            user = self.users[self.sent % len(self.users)]
            text, photo = user.next_message(self.rng, peers[user.bot_id])
            try:
                sent = self.sim.send(user.user_id, user.bot_id, text, photo=photo)
                with self._lock:
                    for item in sent:
                        self.sent_at[(user.bot_id, int(item["id"]))] = time.time()
                self.sent += 1
            except Exception:  # the simulator restarting, say: count it, keep going
                self.errors += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def sent_time(self, bot_id: int, message_id: int) -> float | None:
        with self._lock:
            return self.sent_at.pop((bot_id, message_id), None)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"sent": self.sent, "errors": self.errors}
