"""Users blocking and unblocking a bot: UpdateBotStopped on the bot's qts sequence."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import events, functions
from telethon.tl import types

from tests.support.simulator import World, collect, getting_difference
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)


async def _block(world: World, blocked: bool) -> int | None:
    return await asyncio.to_thread(world.sim.block, world.user["id"], world.bot["id"], blocked)


def test_block_and_unblock_reach_a_listening_bot(world: World, run: Callable[..., Any]) -> None:
    # Given a listening bot with a raw UpdateBotStopped handler
    async def scenario() -> tuple[list[Any], list[int | None], Any]:
        client = await world.bot_client()
        stops: list[Any] = []
        client.add_event_handler(
            collect(stops, lambda u: (u.user_id, u.stopped, u.qts)),
            events.Raw(types.UpdateBotStopped),
        )
        differences = world.sim.stats()["counters"].get("differences", 0)
        await client.catch_up()
        # (a block racing the catch-up's getDifference would come in that difference, which
        # Telethon does not dispatch: see the next test; wait until it has been applied)
        await wait_until_async(
            lambda: (
                world.sim.stats()["counters"].get("differences", 0) > differences
                and not getting_difference(client)
            ),
            5,
            "the catch-up's difference",
        )
        try:
            # When the user blocks, blocks again (no change) and unblocks the bot
            qts = [await _block(world, True), await _block(world, True)]
            qts.append(await _block(world, False))
            await wait_until_async(lambda: len(stops) == 2, 5, "both UpdateBotStopped")
            state = await client(functions.updates.GetStateRequest())
            return stops, qts, state
        finally:
            await client.disconnect()

    stops, qts, state = run(scenario())
    user_id = world.user["id"]
    # Then the bot saw stopped=True then False, on qts 1 and 2; the repeat changed nothing
    assert stops == [(user_id, True, 1), (user_id, False, 2)]
    assert qts == [1, None, 2]
    # and updates.getState reports the qts, while pts did not move
    assert (state.qts, state.pts) == (2, world.bot["pts"])


def test_offline_bot_gets_missed_blocks_from_get_difference(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot that went offline after seeing nothing
    async def scenario() -> tuple[Any, Any, list[Any], int]:
        client = await world.bot_client()
        stops: list[Any] = []
        client.add_event_handler(
            collect(stops, lambda u: (u.user_id, u.stopped, u.qts)),
            events.Raw(types.UpdateBotStopped),
        )
        await client.catch_up()
        state = await client(functions.updates.GetStateRequest())
        await client.disconnect()
        # When the user blocks it while it is offline, and it reconnects and catches up
        await _block(world, True)
        await client.connect()
        try:
            diff = await client(
                functions.updates.GetDifferenceRequest(
                    pts=state.pts, date=state.date, qts=state.qts
                )
            )
            await client.catch_up()

            def box_qts() -> int:
                return int(client._message_box.session_state()[0]["qts"])

            await wait_until_async(lambda: box_qts() == 1, 5, "the message box to reach qts 1")
            await asyncio.sleep(0.3)
            return state, diff, stops, box_qts()
        finally:
            await client.disconnect()

    before, diff, stops, box_qts = run(scenario())
    # Then getDifference returns the UpdateBotStopped in other_updates, with the new qts
    assert before.qts == 0
    assert isinstance(diff, types.updates.Difference)
    [update] = diff.other_updates
    assert isinstance(update, types.UpdateBotStopped)
    assert (update.user_id, update.stopped, update.qts) == (world.user["id"], True, 1)
    assert (diff.state.qts, diff.state.pts) == (1, before.pts)
    assert [u.id for u in diff.users] == [world.user["id"]]
    # and Telethon's message box ends up at that qts (catch_up saw no gap). Telethon 1.45
    # does not dispatch it, though: apply_difference_type sets the new state *before* it
    # runs other_updates through apply_pts_info, which then skips every pts/qts update in
    # them as already applied. tgfleet's listener hands them over itself
    # (DifferenceStates); this pins Telethon's behaviour so an upgrade that changes it
    # shows up.
    assert box_qts == 1
    assert stops == []
