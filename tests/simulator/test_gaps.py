"""Pushes that do not arrive: held back (then updatesTooLong, a pts gap, or late), too many
for one connection (updatesTooLong), and long absences (differenceSlice, pts_total_limit)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import TelegramClient, events, functions
from telethon.tl import types

from tests.support.simulator import World, collect, getting_difference
from tests.support.waiting import wait_until_async
from tgfleet.simulator import SimulatorThread

pytestmark = pytest.mark.timeout(60)


def _counter(world: World, name: str) -> int:
    return int(world.sim.stats()["counters"].get(name, 0))


async def _user_says(world: World, text: str, count: int = 1) -> None:
    await asyncio.to_thread(world.sim.send, world.user["id"], world.bot["id"], text, count=count)


async def _listening(world: World, seen: list[str]) -> TelegramClient:
    """A bot listener that has caught up (its start-up getDifference is answered), so a
    later getDifference can only come from a gap."""
    client = await world.bot_client()
    client.add_event_handler(collect(seen), events.NewMessage(incoming=True))
    before = await asyncio.to_thread(_counter, world, "differences")
    await client.catch_up()
    await wait_until_async(
        lambda: _counter(world, "differences") > before and not getting_difference(client),
        5,
        "the catch-up's difference",
    )
    return client


def test_held_pushes_end_with_updates_too_long_and_come_from_get_difference(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listening bot whose pushes the simulator holds back until released
    async def scenario() -> tuple[list[str], list[str], int, int, int]:
        seen: list[str] = []
        client = await _listening(world, seen)
        differences = await asyncio.to_thread(_counter, world, "differences")
        try:
            await asyncio.to_thread(world.sim.hold_pushes, world.bot["id"])
            # When three messages arrive during the hold
            await _user_says(world, "held {i}", count=3)
            await asyncio.sleep(0.5)  # (a quiet spell: a push would arrive in it)
            during = list(seen)
            # and the hold is released
            held = await asyncio.to_thread(world.sim.release_pushes, world.bot["id"])
            await wait_until_async(lambda: len(seen) == 3, 5, "the held messages")
            too_long = await asyncio.to_thread(_counter, world, "updates_too_long")
            extra = await asyncio.to_thread(_counter, world, "differences") - differences
            return during, seen, held, too_long, extra
        finally:
            await client.disconnect()

    during, seen, held, too_long, extra_differences = run(scenario())
    # Then nothing arrived during the hold; the release pushed updatesTooLong, and the
    # client fetched the three messages with getDifference, once each and in order
    assert during == []
    assert held == 3
    assert too_long == 1
    assert extra_differences >= 1
    assert seen == ["held 0", "held 1", "held 2"]


def test_a_hold_that_ends_silently_is_found_by_the_next_push_s_pts_gap(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listening bot whose pushes are held for two seconds, then dropped
    async def scenario() -> tuple[list[str], int, int]:
        seen: list[str] = []
        client = await _listening(world, seen)
        differences = await asyncio.to_thread(_counter, world, "differences")
        try:
            await asyncio.to_thread(world.sim.hold_pushes, world.bot["id"], 2.0, "drop")
            # When two messages arrive during the hold and one after it
            await _user_says(world, "held {i}", count=2)
            await wait_until_async(
                lambda: _counter(world, "holds_released_drop") == 1, 10, "the hold to end"
            )
            await _user_says(world, "after")
            await wait_until_async(lambda: len(seen) == 3, 5, "all three messages")
            too_long = await asyncio.to_thread(_counter, world, "updates_too_long")
            extra = await asyncio.to_thread(_counter, world, "differences") - differences
            return seen, too_long, extra
        finally:
            await client.disconnect()

    seen, too_long, extra_differences = run(scenario())
    # Then the push after the hold showed a pts gap, and getDifference filled it in order
    assert seen == ["held 0", "held 1", "after"]
    assert too_long == 0
    assert extra_differences >= 1


def test_held_pushes_can_arrive_late_instead(world: World, run: Callable[..., Any]) -> None:
    # Given a listening bot whose pushes are held, to be delivered late
    async def scenario() -> tuple[list[str], list[str], int]:
        seen: list[str] = []
        client = await _listening(world, seen)
        differences = await asyncio.to_thread(_counter, world, "differences")
        try:
            await asyncio.to_thread(world.sim.hold_pushes, world.bot["id"], None, "deliver")
            await _user_says(world, "late {i}", count=2)
            await asyncio.sleep(0.3)
            during = list(seen)
            # When the hold is released
            await asyncio.to_thread(world.sim.release_pushes, world.bot["id"])
            await wait_until_async(lambda: len(seen) == 2, 5, "the late pushes")
            await asyncio.sleep(0.3)  # (a quiet spell: a getDifference would come in it)
            extra = await asyncio.to_thread(_counter, world, "differences") - differences
            return during, seen, extra
        finally:
            await client.disconnect()

    during, seen, extra_differences = run(scenario())
    # Then the pushes arrived late, in order, with no gap to fill
    assert during == []
    assert seen == ["late 0", "late 1"]
    assert extra_differences == 0


def test_too_many_updates_for_one_connection_become_updates_too_long(
    run: Callable[..., Any],
) -> None:
    # Given a simulator that pushes at most 10 waiting updates to a connection
    with SimulatorThread(max_pending_updates=10) as sim:
        world = World(sim, sim.create_bot(), sim.create_user("Bo"))

        async def scenario() -> tuple[list[str], int, int]:
            seen: list[str] = []
            client = await _listening(world, seen)
            differences = await asyncio.to_thread(_counter, world, "differences")
            try:
                # When 30 messages arrive at once, and then 5 (under the limit)
                await _user_says(world, "n{i}", count=30)
                await wait_until_async(lambda: len(seen) == 30, 10, "the 30 messages")
                await wait_until_async(lambda: not getting_difference(client), 5, "the diff")
                await _user_says(world, "m{i}", count=5)
                await wait_until_async(lambda: len(seen) == 35, 10, "the 5 messages")
                extra = await asyncio.to_thread(_counter, world, "differences") - differences
                return seen, await asyncio.to_thread(_counter, world, "updates_too_long"), extra
            finally:
                await client.disconnect()

        seen, too_long, extra_differences = run(scenario())
    # Then the burst came as updatesTooLong and was fetched with one getDifference, in
    # order; the small batch after it was pushed as usual
    assert seen == [f"n{i}" for i in range(30)] + [f"m{i}" for i in range(5)]
    assert too_long == 1
    assert extra_differences == 1


def test_a_long_absence_is_caught_up_in_difference_slices(run: Callable[..., Any]) -> None:
    # Given a simulator answering at most 4 updates per getDifference
    with SimulatorThread(difference_slice=4) as sim:
        world = World(sim, sim.create_bot(), sim.create_user("Bo"))

        async def scenario() -> list[str]:
            seen: list[str] = []
            client = await _listening(world, seen)
            await client.disconnect()
            # When ten messages arrive while the listener is offline and it comes back
            await _user_says(world, "missed {i}", count=10)
            await client.connect()
            await client.catch_up()
            try:
                await wait_until_async(lambda: len(seen) == 10, 10, "the 10 missed messages")
                await asyncio.sleep(0.2)  # (a quiet spell: a duplicate would arrive in it)
                return seen
            finally:
                await client.disconnect()

        seen = run(scenario())
        slices = int(sim.stats()["counters"].get("difference_slices", 0))
    # Then Telethon followed two differenceSlices (4 + 4) and a difference (2), and every
    # message arrived once, in order
    assert seen == [f"missed {i}" for i in range(10)]
    assert slices == 2


def test_difference_limits_answer_as_telegram_documents(run: Callable[..., Any]) -> None:
    # Given a bot 5 messages and 3 blocks/unblocks behind, on a simulator slicing at 2
    with SimulatorThread(difference_slice=2) as sim:
        world = World(sim, sim.create_bot(), sim.create_user("Bo"))

        async def scenario() -> tuple[Any, ...]:
            client = await world.bot_client(receive_updates=False)
            try:
                start = await client(functions.updates.GetStateRequest())
                await _user_says(world, "m{i}", count=5)
                for blocked in (True, False, True):
                    await asyncio.to_thread(sim.block, world.user["id"], world.bot["id"], blocked)

                def ask(**kw: Any) -> Any:
                    fields = {"pts": start.pts, "date": start.date, "qts": start.qts} | kw
                    return client(functions.updates.GetDifferenceRequest(**fields))

                # When it asks with a pts_total_limit the gap exceeds, with a pts_limit,
                # and from the first slice's intermediate state on
                too_long = await ask(pts_total_limit=4)
                first = await ask(pts_limit=1)
                second = await ask()
                state = second.intermediate_state
                third = await ask(pts=state.pts, qts=state.qts)
                state = third.intermediate_state
                last = await ask(pts=state.pts, qts=state.qts)
                return start, too_long, first, second, third, last
            finally:
                await client.disconnect()

        start, too_long, first, second, third, last = run(scenario())
    # Then the total limit answers differenceTooLong with the current pts
    assert isinstance(too_long, types.updates.DifferenceTooLong)
    assert too_long.pts == start.pts + 5
    # pts_limit narrows the slice
    assert isinstance(first, types.updates.DifferenceSlice)
    assert [m.message for m in first.new_messages] == ["m0"]
    # and slices of 2 (pts and qts each) lead to a difference with the final state
    assert isinstance(second, types.updates.DifferenceSlice)
    assert [m.message for m in second.new_messages] == ["m0", "m1"]
    assert [u.qts for u in second.other_updates] == [1, 2]
    assert (second.intermediate_state.pts, second.intermediate_state.qts) == (start.pts + 2, 2)
    assert isinstance(third, types.updates.DifferenceSlice)
    assert [m.message for m in third.new_messages] == ["m2", "m3"]
    assert [u.qts for u in third.other_updates] == [3]
    assert isinstance(last, types.updates.Difference)
    assert [m.message for m in last.new_messages] == ["m4"]
    assert (last.state.pts, last.state.qts) == (start.pts + 5, 3)
