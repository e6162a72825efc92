"""Simulated users of the matchmaking app, for the demo: they read what the bot last sent
them and answer it as a person would, typing or pressing its buttons.

A user with no message yet sends /start; then they answer registration's questions
(their name, an age, a bad one now and then, a photo or Skip, a bio), press Browse
profiles, and Like, Skip or now and then Report the cards they are shown (or type
/browse); the menu and their own profile come up too. The admin presses Approve (or
now and then Ban) on the profiles they are asked to review. Each user reads the app in
their own language (the app's catalogs give the labels to look for), so Russian users
press Russian buttons.

Presses wait for the bot's answer in a small pool of threads (a user acts again only
when their press is answered); ``sent_at`` maps each message (bot id, message id) to the
moment it left, so the demo measures latencies from the rows the workers commit, and
``press_ms`` holds each press's time to its answer.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tgfleet.bots.apps.matchmaking import I18N
from tgfleet.simulator import SimulatorClient

#: (first name, gender) of the simulated users, in turn.
PEOPLE = (
    ("Ann", "female"),
    ("Bob", "male"),
    ("Cleo", "female"),
    ("Dan", "male"),
    ("Eve", "female"),
    ("Finn", "male"),
    ("Gia", "female"),
    ("Hal", "male"),
    ("Ivy", "female"),
    ("Jon", "male"),
    ("Lea", "female"),
    ("Max", "male"),
)
NAMES = tuple(name for name, _ in PEOPLE)
BIOS = ("Hiking and jazz.", "Chess, bikes, bad puns.", "Looking for a tennis partner.")
#: The labels of the app's answers, by what a user does with them.
GENDER_LABELS = {"male": "Man", "female": "Woman"}
SEEKING_LABELS = {"male": "Men", "female": "Women", "any": "Anyone"}
PRESS_TIMEOUT_S = 15.0
#: The pause after a user who had nothing to do (waiting for the bot's answer).
IDLE_S = 0.01


@dataclass
class SimUser:
    user_id: int
    bot_id: int
    name: str
    gender: str = "female"
    seeking: str = "male"
    lang: str = "en"
    #: The admin answers review requests only.
    admin: bool = False
    busy: bool = False

    def gettext(self) -> Callable[[str], str]:
        return I18N.catalog(I18N.language(self.lang)).gettext


def person(index: int, user_id: int, bot_id: int, lang: str = "en") -> SimUser:
    """The ``index``-th simulated user: a name and gender in turn, every fourth user
    open to anyone, the others to the other gender."""
    name, gender = PEOPLE[index % len(PEOPLE)]
    other = "male" if gender == "female" else "female"
    seeking = "any" if index % 4 == 3 else other
    return SimUser(user_id, bot_id, name, gender, seeking, lang)


Action = tuple[str, Any]  # ("send", text) | ("photo", caption) | ("press", (message id, label))


def next_action(user: SimUser, received: list[dict[str, Any]], rng: random.Random) -> Action | None:
    """What ``user`` does next, given what the bot sent them (oldest first); None: wait."""
    _ = user.gettext()
    shown = [m for m in received if not m.get("deleted")]
    if not shown:
        return None if user.admin else ("send", "/start")
    active = next((m for m in reversed(shown) if _labels(m)), None)
    if user.admin:
        if active is None or _("Approve") not in _labels(active):
            return None
        return _press(active, _("Ban") if rng.random() < 0.05 else _("Approve"))
    last = shown[-1]
    question = active if active is not None else last
    text = question.get("text") or ""
    labels = _labels(question)
    if text.endswith(_("What's your name?")):
        return ("send", user.name)
    if text.endswith(_("How old are you?")) or last.get("text", "").startswith(
        _("Please send your age as a whole number from {min} to {max}.").split("{")[0]
    ):
        return ("send", "twenty" if rng.random() < 0.1 else str(rng.randint(19, 55)))
    if _(GENDER_LABELS[user.gender]) in labels:
        return _press(question, _(GENDER_LABELS[user.gender]))
    if _(SEEKING_LABELS["any"]) in labels:
        return _press(question, _(SEEKING_LABELS[user.seeking]))
    if text.endswith(_("Send me a photo of yourself.")) or text.startswith(
        _("That's not a photo. Send one, or press Skip.")
    ):
        return ("photo", "") if rng.random() < 0.8 else _press(question, _("Skip"))
    if _("Skip") in labels and _("Report") not in labels:  # the bio
        return ("send", rng.choice(BIOS))
    if (_("❤️ Like") in labels or _("Browse profiles") in labels) and rng.random() < 0.1:
        return ("send", "/browse")  # typed now and then, as people do
    if _("❤️ Like") in labels:
        roll = rng.random()
        choice = "❤️ Like" if roll < 0.45 else "Report" if roll < 0.47 else "Skip"
        return _press(question, _("Menu") if roll > 0.95 else _(choice))
    if _("Browse profiles") in labels:
        return _press(question, _("My profile") if rng.random() < 0.1 else _("Browse profiles"))
    if _("Menu") in labels:  # their profile, no one left to see, a language choice...
        return _press(question, _("Menu"))
    return ("send", "/start")


def _labels(message: dict[str, Any]) -> list[str]:
    """The labels of the message's callback buttons."""
    rows = (message.get("markup") or {}).get("inline") or []
    return [b["text"] for row in rows for b in row if b.get("type", "callback") == "callback"]


def _press(message: dict[str, Any], label: str) -> Action:
    return ("press", (int(message["message_id"]), label))


class TrafficGenerator:
    """Acts for the users at ``rate`` actions per second from a background thread."""

    def __init__(self, sim: SimulatorClient, users: list[SimUser], rate: float, seed: int = 7):
        self.sim = sim
        self.users = users
        self.rate = rate
        self.rng = random.Random(seed)
        self.sent = 0
        self.presses = 0
        self.errors = 0
        #: (bot id, message id) -> wall-clock time it was sent (for latency).
        self.sent_at: dict[tuple[int, int], float] = {}
        #: Each press's time to the bot's answer, in ms (the newest 5,000).
        self.press_ms: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tgfleet-press")
        self._thread = threading.Thread(target=self._run, name="tgfleet-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        turn = 0
        while not self._stop.is_set():
            user = self.users[turn % len(self.users)]
            turn += 1
            try:
                acted = not user.busy and self._act(user)
            except Exception:  # the simulator restarting, say: count it, keep going
                self.errors += 1
                acted = True
            if not acted:  # (waiting for the bot: the next user's turn, soon)
                self._stop.wait(IDLE_S)
                continue
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def _act(self, user: SimUser) -> bool:
        received = self.sim.received(user.user_id, user.bot_id)
        action = next_action(user, received, self.rng)
        if action is None:
            return False
        kind, value = action
        if kind == "press":
            user.busy = True
            self._pool.submit(self._press, user, *value)
            return True
        sent = self.sim.send(user.user_id, user.bot_id, value, photo=kind == "photo")
        with self._lock:
            for item in sent:
                self.sent_at[(user.bot_id, int(item["id"]))] = time.time()
            self.sent += 1
        return True

    def _press(self, user: SimUser, message_id: int, label: str) -> None:
        started = time.monotonic()
        try:
            answer = self.sim.press(
                user.user_id, user.bot_id, message_id, text=label, timeout=PRESS_TIMEOUT_S
            )
            with self._lock:
                self.presses += 1
                if answer.get("answered"):
                    self.press_ms = [*self.press_ms[-4999:], (time.monotonic() - started) * 1000]
        except Exception:  # a card edited away under the press: the user looks again
            with self._lock:
                self.errors += 1
        finally:
            user.busy = False

    def sent_time(self, bot_id: int, message_id: int) -> float | None:
        with self._lock:
            return self.sent_at.pop((bot_id, message_id), None)

    def press_percentiles(self) -> tuple[float, float] | None:
        """(p50, p99) of the presses' times to their answers, in ms (None: too few)."""
        with self._lock:
            if len(self.press_ms) < 2:
                return None
            cuts = statistics.quantiles(self.press_ms, n=100)
        return cuts[49], cuts[98]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"sent": self.sent, "presses": self.presses, "errors": self.errors}
