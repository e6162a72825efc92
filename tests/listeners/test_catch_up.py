"""Updates that come through getDifference move the saved update state, as live ones do.

Telethon hands a difference's messages over as ``UpdateNewMessage`` with pts 0; a
listener that saved only from each update's own pts fetched the same difference again
after every restart. Real ``tgfleet listen`` processes against the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.databases import is_blocked
from tests.support.running import listening
from tests.support.waiting import wait_until
from tgfleet.db import fleet
from tgfleet.dev.processes import Child
from tgfleet.platform.settings import Settings


def bot_pts(simulator: Any, bot_id: int) -> int:
    return next(int(b["pts"]) for b in simulator.bots() if int(b["id"]) == bot_id)


def saved_pts(settings: Settings, bot_id: int) -> int:
    state = fleet.load_update_state(settings, bot_id)
    return 0 if state is None else state.pts


def test_a_catch_up_after_a_restart_is_saved(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
) -> None:
    # Given a bot whose listener ran once and stopped
    bot_id = int(make_bot(app="echo")["id"])
    listening(start_listener, bot_id).stop()
    before = saved_pts(sim_settings, bot_id)
    # When a user writes five messages while nobody listens
    ann = int(simulator.create_user("Ann")["id"])
    simulator.send(ann, bot_id, "missed {i}", count=5)
    assert bot_pts(simulator, bot_id) == before + 5
    # Then the next listener fetches them with getDifference, publishes them, and saves
    # the state after them
    listener = listening(start_listener, bot_id)
    wait_until(
        lambda: saved_pts(sim_settings, bot_id) == before + 5,
        30,
        f"the saved pts to reach {before + 5} (it is {saved_pts(sim_settings, bot_id)})",
    )
    listener.stop()


def test_updates_fetched_after_updates_too_long_are_saved(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
) -> None:
    # Given a listening bot whose pushes the server holds back
    bot_id = int(make_bot(app="echo")["id"])
    listener = listening(start_listener, bot_id)
    ann = int(simulator.create_user("Ann")["id"])
    simulator.send(ann, bot_id, "live")
    wait_until(lambda: saved_pts(sim_settings, bot_id) == bot_pts(simulator, bot_id), 30, "live")
    simulator.hold_pushes(bot_id)
    simulator.send(ann, bot_id, "held {i}", count=3)
    # When the hold ends with updatesTooLong (the client must call getDifference)
    assert simulator.release_pushes(bot_id, then="too_long") == 3
    # Then what the difference brought is published and the state saved after it
    wait_until(
        lambda: saved_pts(sim_settings, bot_id) == bot_pts(simulator, bot_id),
        30,
        f"the saved pts to reach {bot_pts(simulator, bot_id)}",
    )
    listener.stop()


def test_a_block_while_nobody_listens_reaches_the_bot(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    # Given a bot a user has written to, whose listener then stopped
    bot_id = int(make_bot(app="echo")["id"])
    start_worker(queues="updates", concurrency=1, extra_env=sim_env)
    listener = listening(start_listener, bot_id)
    ann = int(simulator.create_user("Ann")["id"])
    simulator.send(ann, bot_id, "hi")
    wait_until(lambda: saved_pts(sim_settings, bot_id) == bot_pts(simulator, bot_id), 30, "hi")
    listener.stop()
    # When she blocks the bot while nobody listens (UpdateBotStopped comes back in the
    # difference's other_updates, which Telethon drops on its own)
    simulator.block(ann, bot_id, True)
    # Then the next listener hands it over, and the worker marks her blocked
    listening(start_listener, bot_id)

    wait_until(lambda: is_blocked(sim_settings, bot_id, ann) is True, 60, "Ann marked blocked")
