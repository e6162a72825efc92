"""A bot running an app end to end: the fixture the end-to-end tests of the handler API
share (``tests/bots/``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.databases import query
from tests.support.waiting import wait_for_log, wait_until
from tgfleet.dev.processes import Child
from tgfleet.platform.settings import Settings

#: What ``run_app`` returns: the ids of the bot, a user, and the admin (0: none).
RunningApp = dict[str, int]


@pytest.fixture
def run_app(
    settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> Callable[..., RunningApp]:
    """Factory: ``run_app(app, bot_settings=None, admin=False)`` makes a bot running
    ``app`` (a dotted path), with ``bot_settings`` merged into its settings and, with
    ``admin``, an admin who has talked to it; starts its listener, an update worker of two
    processes and a sender. Everything stops at teardown."""

    def start(
        app: str, bot_settings: dict[str, Any] | None = None, admin: bool = False
    ) -> RunningApp:
        admin_id = int(simulator.create_user("Boss")["id"]) if admin else 0
        bot = int(make_bot(app=app, admins=[admin_id] if admin else None)["id"])
        if bot_settings:
            query(
                settings,
                "UPDATE bots SET settings = settings || %s::jsonb WHERE id = %s RETURNING id",
                json.dumps(bot_settings),
                bot,
            )
        # The three start side by side (each spends seconds importing), then are waited for.
        listener = start_listener([bot])
        workers = [
            start_worker(queues="updates", concurrency=2, extra_env=sim_env, wait=False),
            start_worker(
                queues="sends", concurrency=4, pool="threads", extra_env=sim_env, wait=False
            ),
        ]
        wait_until(
            lambda: f"listening for bot {bot}" in listener.log_path.read_text(), 60, "the listener"
        )
        for worker in workers:
            wait_for_log(worker, "ready.", 60)
        user = int(simulator.create_user("Ann")["id"])
        if admin:  # the bot knows its admin's chat from a message (the entity store)
            simulator.send(admin_id, bot, "hello")
            simulator.wait_received(admin_id, 1, bot, timeout=60)
        return {"bot": bot, "user": user, "admin": admin_id}

    return start


def listening(start_listener: Callable[..., Child], bot_id: int) -> Child:
    """A ``tgfleet listen`` process for ``bot_id``, once it listens."""
    listener = start_listener(bots=[bot_id])
    wait_for_log(listener, f"listening for bot {bot_id}", 60)
    return listener
