"""The matchmaking app end to end: simulated users -> listener -> update worker ->
outbox -> sender worker -> what the users receive, against real everything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.databases import query
from tgfleet.dev.processes import Child
from tgfleet.platform.settings import Settings

pytestmark = pytest.mark.timeout(300)


class Person:
    """A simulated user who talks to one bot and reads its answers."""

    def __init__(self, sim: Any, bot_id: int, name: str) -> None:
        self.sim, self.bot_id = sim, bot_id
        self.id = int(sim.create_user(name)["id"])
        self.seen = 0

    def say(self, text: str = "", *, photo: bool = False, answers: int = 1) -> list[dict[str, Any]]:
        """Send ``text``; return the next ``answers`` messages the bot sends this user."""
        self.sim.send(self.id, self.bot_id, text, photo=photo)
        return self.expect(answers)

    def expect(self, count: int = 1) -> list[dict[str, Any]]:
        got = self.sim.wait_received(self.id, self.seen + count, self.bot_id, timeout=60)
        new = got[self.seen : self.seen + count]
        self.seen += count
        return new


def profile(settings: Settings, bot_id: int, user_id: int) -> tuple[Any, ...] | None:
    rows = query(
        settings,
        "SELECT display_name, age, photo_id IS NOT NULL FROM profiles "
        "WHERE bot_id = %s AND user_id = %s",
        bot_id,
        user_id,
    )
    return rows[0] if rows else None


def event_kinds(settings: Settings, bot_id: int) -> list[str]:
    rows = query(settings, "SELECT kind FROM events WHERE bot_id = %s ORDER BY id", bot_id)
    return [row[0] for row in rows]


def test_profiles_browse_like_match_and_report(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    # Given a matchmaking bot whose admin has talked to it once, with the whole pipeline
    admin_id = int(simulator.create_user("Admin")["id"])
    bot = make_bot(app="matchmaking", admins=[admin_id])["id"]
    start_listener([bot])
    start_worker(queues="updates", concurrency=2, extra_env=sim_env)
    start_worker(queues="sends", concurrency=4, pool="threads", extra_env=sim_env)
    admin = Person(simulator, bot, "Admin")
    admin.id = admin_id
    assert "Commands" in admin.say("/help")[0]["text"]

    # When Ann registers, she is welcomed and the admin hears about it
    ann = Person(simulator, bot, "Ann")
    assert "Welcome, Ann" in ann.say("/start")[0]["text"]
    assert f"New user: Ann (#{ann.id})" in admin.expect()[0]["text"]
    # Bad input gets a friendly answer and stores nothing
    assert ann.say("/set age twenty")[0]["text"] == (
        "Age must be a whole number from 18 to 120. Nothing was changed."
    )
    assert ann.say("/set age 17")[0]["text"].startswith("Age must be")
    assert profile(sim_settings, bot, ann.id) == (None, None, False)
    assert ann.say("/set name Ann")[0]["text"] == "Name saved."
    assert ann.say("/set age 30")[0]["text"] == "Age saved."
    assert ann.say(photo=True)[0]["text"] == "Photo saved."
    assert profile(sim_settings, bot, ann.id) == ("Ann", 30, True)

    # And Bob registers and browses: he sees Ann's card with her photo
    bob = Person(simulator, bot, "Bob")
    bob.say("/start")
    admin.expect()
    bob.say("/set name Bob")
    card = bob.say("/browse")[0]
    assert card["text"].startswith(f"#{ann.id} Ann") and card["media"]
    assert bob.say(f"/like {ann.id}")[0]["text"].startswith("Liked!")

    # When Ann likes Bob back, both are told it is a match
    assert bob.id and ann.say("/browse")[0]["text"].startswith(f"#{bob.id} Bob")
    assert ann.say(f"/like {bob.id}")[0]["text"].startswith("It's a match with Bob")
    assert bob.expect()[0]["text"].startswith("It's a match with Ann")
    # And a report reaches the admins
    assert ann.say(f"/report {bob.id} rude")[0]["text"].startswith("Thanks")
    assert admin.expect()[0]["text"] == f"Report: user #{ann.id} reported #{bob.id}: rude"
    # And every step left an analytics event
    kinds = event_kinds(sim_settings, bot)
    for kind in (
        "new_user",
        "validation_error",
        "profile_updated",
        "browse",
        "like",
        "match",
        "report",
    ):
        assert kind in kinds
