"""The Throttle middleware on a real Redis: the limit holds across processes, a
redelivered update keeps its verdict, the notice does not flood, buckets expire, an
unreachable Redis lets updates through; and end to end, a bot whose user floods it."""

from __future__ import annotations

import multiprocessing
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy.orm import Session
from telethon.tl import types

from tests.support.databases import query
from tests.support.running import RunningApp
from tests.support.waiting import wait_until
from tgfleet.bots import Context, Throttle
from tgfleet.bots.effects import Effects
from tgfleet.inbox import InboundMessage
from tgfleet.platform.names import THROTTLE_PREFIX
from tgfleet.platform.settings import Settings

pytestmark = pytest.mark.timeout(300)
USER = 1001
#: Effectively no refill during a test: what goes through is the burst alone.
NO_REFILL = 0.0001


@pytest.fixture
def bot() -> int:
    """A bot id no other test uses (its buckets are its own)."""
    return uuid.uuid4().int % 10**9 + 3 * 10**9


@pytest.fixture
def client(settings: Settings, bot: int) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    for key in client.scan_iter(f"{THROTTLE_PREFIX}{bot}:*"):
        client.delete(key)
    client.close()


def take_many(url: str, bot: int, ids: list[str], start: Any, results: Any) -> None:
    """In a process of its own: take a token for each of ``ids`` as one user of ``bot``."""
    client = redis.Redis.from_url(url)
    throttle = Throttle(rate=NO_REFILL, burst=10)
    start.wait()
    results.put([(i, throttle.take(client, bot, USER, i).allowed) for i in ids])


def test_two_processes_share_one_users_limit(
    settings: Settings, client: redis.Redis, bot: int
) -> None:
    # Given a burst of 10, and two processes taking tokens for one user at the same time,
    # 20 different updates each
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(2), spawn.Queue()
    workers = [
        spawn.Process(
            target=take_many,
            args=(settings.redis_url, bot, [f"{n}:{i}" for i in range(20)], start, results),
        )
        for n in (1, 2)
    ]
    for worker in workers:
        worker.start()
    verdicts = [results.get(timeout=60), results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
    # Then exactly 10 of the 40 went through, between them
    allowed = [i for got in verdicts for i, ok in got if ok]
    assert len(allowed) == 10, verdicts
    # And when the other process sees those same updates again (redelivered), it gives
    # each its first verdict and takes nothing
    throttle = Throttle(rate=NO_REFILL, burst=10)
    again = {i: throttle.take(client, bot, USER, i).allowed for i in allowed}
    assert all(again.values())
    assert not throttle.take(client, bot, USER, "fresh").allowed


def test_a_redelivered_update_keeps_its_verdict_and_takes_no_token(
    client: redis.Redis, bot: int
) -> None:
    throttle = Throttle(rate=NO_REFILL, burst=2, notice_every=60)
    take = lambda update: throttle.take(client, bot, USER, update)  # noqa: E731
    # Given a burst of 2: a and b go through, c is refused with the notice
    assert [take(u).allowed for u in ("a", "b")] == [True, True]
    first_refusal = take("c")
    assert (first_refusal.allowed, first_refusal.notice) == (False, True)
    # When a and c are run again (a retry, a redelivery), Then each gets its first verdict
    # (c its notice too: the first run's reply was rolled back with it)
    assert take("a").allowed and take("a").allowed
    assert take("c") == first_refusal
    # And the next new update is refused without a notice: one per window
    later = take("d")
    assert (later.allowed, later.notice) == (False, False)


def test_a_bucket_refills_at_the_rate_and_expires(client: redis.Redis, bot: int) -> None:
    throttle = Throttle(rate=50, burst=1)
    assert throttle.take(client, bot, USER, "a").allowed
    assert not throttle.take(client, bot, USER, "b").allowed
    # A token comes back after 1/50 s
    wait_until(lambda: throttle.take(client, bot, USER, str(uuid.uuid4())).allowed, 5, "a token")
    # And the bucket is one key, under the namespace, that goes away by itself
    [key] = list(client.scan_iter(f"{THROTTLE_PREFIX}{bot}:*"))
    assert key.decode() == throttle.key(bot, USER)
    assert 0 < client.pttl(key) <= throttle.ttl_ms


def context(redis_url: str, bot: int, inbound: InboundMessage) -> Context:
    return Context(Session(), bot, [], inbound, Effects(bot), redis_url=redis_url)


def text(bot: int, msg_id: int) -> InboundMessage:
    tl = types.Message(id=msg_id, peer_id=types.PeerUser(USER), date=None, message="hi")
    return InboundMessage(bot, USER, USER, msg_id, "hi", tl, "message")


def press(bot: int, query_id: int) -> InboundMessage:
    update = types.UpdateBotCallbackQuery(
        query_id=query_id, user_id=USER, peer=types.PeerUser(USER), msg_id=5, chat_instance=1,
        data=b"go",
    )  # fmt: skip
    return InboundMessage(bot, USER, USER, 5, "go", None, "callback", update=update)


def test_the_middleware_drops_what_is_over_the_limit(
    settings: Settings, client: redis.Redis, bot: int
) -> None:
    throttle = Throttle(rate=NO_REFILL, burst=2, notice="Slow down")
    ran: list[int] = []

    def handler(ctx: Context) -> None:
        ran.append(ctx.message.tg_message_id)

    # When a user sends four messages and presses a button
    contexts = [context(settings.redis_url, bot, text(bot, n)) for n in (1, 2, 3, 4)]
    contexts.append(context(settings.redis_url, bot, press(bot, 77)))
    for ctx in contexts:
        throttle(handler, ctx)
    # Then the first two ran, the third got the notice, the fourth nothing
    assert ran == [1, 2]
    assert [[row["text"] for row in ctx.effects.outbox] for ctx in contexts[2:4]] == [
        ["Slow down"],
        [],
    ]
    # And the press was answered with the notice, so the spinner stops
    [answer] = contexts[4].effects.outbox
    assert (answer["op"], answer["text"]) == ("answer", "Slow down")


def test_an_unreachable_redis_lets_every_update_through(bot: int) -> None:
    # Given a Redis URL nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    throttle = Throttle(rate=NO_REFILL, burst=1)
    ran: list[int] = []
    # When three messages come, Then all three run
    for n in (1, 2, 3):
        throttle(
            lambda ctx: ran.append(1), context(f"redis://127.0.0.1:{port}/0", bot, text(bot, n))
        )
    assert len(ran) == 3


# -- end to end -----------------------------------------------------------------------------

APP = "tests.support.apps_throttle:app"


def test_a_flooding_user_is_throttled_by_the_running_bot(
    settings: Settings, simulator: Any, run_app: Callable[..., RunningApp]
) -> None:
    fleet = run_app(APP)
    bot, user = fleet["bot"], fleet["user"]
    # Given a bot that lets a user start it and send one message, then throttles them
    simulator.send(user, bot, "/start")
    [menu] = simulator.wait_received(user, 1, bot, timeout=60)
    simulator.send(user, bot, "one")
    simulator.wait_received(user, 2, bot, timeout=60)
    # When the user sends two more messages and presses the button
    simulator.send(user, bot, "two")
    simulator.send(user, bot, "three")
    answer = simulator.press(user, bot, menu["message_id"], text="Go", timeout=30)
    # Then the press is answered with the notice
    assert (answer["answered"], answer["message"]) == (True, "Slow down")
    # And of the messages, the first over the limit got the notice, the next nothing
    handled = (
        "SELECT count(*) FROM messages WHERE bot_id = %s AND direction = 'in' "
        "AND processed_at IS NOT NULL"
    )
    wait_until(lambda: query(settings, handled, bot)[0][0] == 5, 60, "every update handled")
    expected = ["Pick one", "echo one", "Slow down"]
    wait_until(
        lambda: [m["text"] for m in simulator.received(user, bot)] == expected,
        60,
        "the notice",
        detail=lambda: simulator.received(user, bot),
    )
    sends = "SELECT op, count(*) FROM outbox WHERE bot_id = %s GROUP BY op ORDER BY op"
    assert query(settings, sends, bot) == [("answer", 1), ("send", 3)]
