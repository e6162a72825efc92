"""The send path end to end: real sender workers, the simulator with Telegram's limits on,
real PostgreSQL and Redis."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import func, select, update

from tests.support.databases import is_blocked
from tests.support.sends import SendWorld
from tests.support.waiting import wait_until
from tgfleet.db import (
    Bot,
    BotSession,
    Entity,
    Outbox,
    OutboxStatus,
    TgUser,
    decrypt_secret,
    fleet,
    session_scope,
)
from tgfleet.dev.services import DevServices, restart_redis
from tgfleet.sends import broadcasts, wake
from tgfleet.sends.cli import broadcast_line
from tgfleet.sends.delivery import stars_spent
from tgfleet.sends.outbox import enqueue_deliveries
from tgfleet.sends.paid import StarsLedger

pytestmark = pytest.mark.timeout(180)
FLOOD_S = 6


def test_fleet_batch_is_delivered_exactly_once_without_flood_waits(send_world: SendWorld) -> None:
    w = send_world
    # Given 3 bots and 100 users every bot's listener has seen
    bots = [w.add_bot() for _ in range(3)]
    users = [w.add_user(f"u{i}") for i in range(100)]
    for bot in bots:
        w.listener_saw(bot["id"], [u["id"] for u in users])
    # When 600 messages are queued (two for each user from each bot: the one-row path,
    # which keeps a chat's messages in order) and 2 sender processes deliver them
    items = [(bots[i % 3]["id"], users[(i // 3) % 100]["id"], f"msg {i}") for i in range(600)]
    w.queue(items)
    senders = w.start_senders(2)
    w.wait_settled(600, timeout=90)
    # Then every row is sent, each message arrived exactly once, and Telegram never
    # had to answer FLOOD_WAIT
    assert w.statuses() == Counter({"sent": 600}), w.log_tail()
    expected: dict[int, Counter[str]] = {}
    for _, user_id, text in items:
        expected.setdefault(user_id, Counter())[text] += 1
    for user in users:
        assert Counter(w.received(user["id"])) == expected[user["id"]]
    stats = w.sim.stats()
    assert stats["flood_errors"] == 0
    assert stats["counters"].get("duplicate_sends", 0) == 0
    # And the pacer kept them from fighting over tokens: a send the limiter refuses is
    # a claim given back and a task hop (when refused sends went straight back to the
    # limiter, these 600 were refused about 470 times; through the pacer, about 140)
    metrics = redis.Redis.from_url(w.settings.redis_url).hgetall("tgfleet:metrics:sends")
    assert int(metrics.get(b"limiter_refusals", 0)) < 300, metrics
    # And each sender's database pool kept a connection for each of its 8 threads and
    # the few beside them (tests/db/test_session.py shows what keeping them saves)
    for sender in senders:
        log = sender.log_path.read_text(errors="replace")
        assert "database pool: 12 connections kept for 8 threads" in log, w.log_tail()


def test_a_broadcast_goes_in_batches_exactly_once_without_flood_waits(
    send_world: SendWorld,
) -> None:
    w = send_world
    # Given 3 bots whose listeners saw the same 150 users
    bots = [w.add_bot() for _ in range(3)]
    users = [w.add_user(f"u{i}") for i in range(150)]
    for bot in bots:
        w.listener_saw(bot["id"], [u["id"] for u in users])
    # When each bot queues one message for every user in one transaction (a broadcast)
    items = [(bot["id"], user["id"], f"news from {bot['id']}") for bot in bots for user in users]
    w.queue(items)
    # (a lease longer than the test: the sweep hands rows whose batch waited for a busy
    # worker longer than that to tasks of their own, which is right, and not this test)
    w.start_senders(2, TGFLEET_SEND_LEASE_S="60")
    w.wait_settled(450, timeout=90)
    # Then they went in batches, every message arrived once, each bot kept to its limits
    assert w.statuses() == Counter({"sent": 450}), w.log_tail()
    for user in users:
        assert sorted(w.received(user["id"])) == sorted(f"news from {b['id']}" for b in bots)
    metrics = redis.Redis.from_url(w.settings.redis_url).hgetall("tgfleet:metrics:sends")
    assert int(metrics[b"batched"]) == 450
    stats = w.sim.stats()
    assert stats["flood_errors"] == 0
    assert stats["counters"].get("duplicate_sends", 0) == 0
    # (150 messages take a bot at least (150 - its burst) / 30 s: about 4.5 s)
    for bot in bots:
        times = sorted(r.sent_at.timestamp() for r in w.rows(bot["id"]) if r.sent_at)
        assert times[-1] - times[0] >= (150 - 15) / 30 - 0.2


def test_a_batch_gives_a_blocked_and_an_unknown_user_their_own_outcome(
    send_world: SendWorld,
) -> None:
    w = send_world
    # Given a bot whose listener saw 6 users, one of whom blocked it, and a user it never saw
    bot = w.add_bot()
    users = [w.add_user(f"u{i}") for i in range(6)]
    stranger = w.add_user("stranger")
    w.listener_saw(bot["id"], [u["id"] for u in users])
    blocker = users[2]
    w.sim.block(blocker["id"], bot["id"])
    # When it messages all 7 in one transaction
    targets = [*users, stranger]
    ids = w.queue([(bot["id"], u["id"], "hello") for u in targets])
    w.start_senders(1)
    w.wait_settled(7, timeout=60)
    # Then the 5 others got it from the batch; the block failed at once and is recorded;
    # the stranger's row went its own way: retried, then dead
    rows = {r.id: r for r in w.rows(bot["id"])}
    by_user = {u["id"]: rows[i] for u, i in zip(targets, ids, strict=True)}
    assert by_user[blocker["id"]].status is OutboxStatus.FAILED
    assert by_user[blocker["id"]].attempts == 0
    assert by_user[stranger["id"]].status is OutboxStatus.DEAD, w.log_tail()
    assert by_user[stranger["id"]].attempts == 3
    sent = [u for u in users if u is not blocker]
    assert all(by_user[u["id"]].status is OutboxStatus.SENT for u in sent)
    assert all(w.received(u["id"]) == ["hello"] for u in sent)
    assert w.received(blocker["id"]) == [] and w.received(stranger["id"]) == []
    assert is_blocked(w.settings, bot["id"], blocker["id"])
    metrics = redis.Redis.from_url(w.settings.redis_url).hgetall("tgfleet:metrics:sends")
    assert int(metrics[b"batched"]) == 5


def test_scheduled_sends_arrive_on_time_though_their_sender_was_killed(
    send_world: SendWorld,
) -> None:
    w = send_world
    # Given a bot, 5 users its listener saw, and a sender at work
    bot, users = w.bot_with_users(5)
    [first] = w.start_senders(1)
    # When a message for each is scheduled 6 s ahead, and one to go now
    at = datetime.now(UTC) + timedelta(seconds=6)
    w.queue([(bot["id"], u["id"], "on time") for u in users], at=at)
    w.queue([(bot["id"], users[0]["id"], "right away")])
    wait_until(lambda: w.received(users[0]["id"]) == ["right away"], 30, "the unscheduled send")
    assert all(w.received(u["id"]) == [] for u in users[1:])
    # And the sender is killed with SIGKILL before the time, another one started
    os.kill(first.process.pid, signal.SIGKILL)
    w.start_senders(1)
    w.wait_settled(6, timeout=60)
    # Then each scheduled message arrived once, no earlier than its time, within a second
    for user in users:
        [message] = [m for m in w.sim.received(user["id"]) if m["text"] == "on time"]
        late = message["date"] - at.timestamp()
        assert -0.05 <= late <= 1.0, late


def test_a_broadcast_paused_mid_way_resumes_once_each_and_a_cancelled_one_stops(
    send_world: SendWorld,
) -> None:
    w = send_world
    # Given a bot whose listener saw 150 users, and a broadcast to all of them under way,
    # at 10 messages a second (15 s: at 30/s it could end before the pause command had
    # started, which under load took seconds)
    bot, users = w.bot_with_users(150)
    with session_scope(w.settings, role="admin") as s:
        s.execute(
            update(Bot).where(Bot.id == bot["id"]).values(settings={"limits": {"bot_per_s": 10}})
        )
    w.queue([(bot["id"], u["id"], "news") for u in users], broadcast_id=31)
    w.start_senders(1)
    wait_until(lambda: w.statuses()["sent"] >= 20, 30, "20 sent", poll=0.05)
    # When an operator pauses it from another terminal
    cli = [sys.executable, "-m", "tgfleet", "broadcast"]
    who = ["--bot", str(bot["id"]), "--id", "31"]
    paused = subprocess.run([*cli, "pause", *who], env=w.env, capture_output=True, text=True)
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    # Then sending stops (a round already on the wire finishes)
    time.sleep(1.0)
    settled = w.statuses()["sent"]
    time.sleep(2.0)
    assert w.statuses()["sent"] == settled < 150
    status = subprocess.run([*cli, "status", *who], env=w.env, capture_output=True, text=True)
    assert f"{settled}/150 delivered" in status.stdout and "paused" in status.stdout
    # When it is resumed
    subprocess.run([*cli, "resume", *who], env=w.env, check=True, capture_output=True)
    w.wait_settled(150, timeout=60)
    # Then every user got it exactly once
    assert w.statuses() == Counter({"sent": 150})
    assert all(w.received(u["id"]) == ["news"] for u in users)
    # When a second broadcast is cancelled mid-way
    w.queue([(bot["id"], u["id"], "more news") for u in users], broadcast_id=32)
    wait_until(lambda: w.statuses()["sent"] >= 170, 30, "20 more sent", poll=0.05)
    subprocess.run([*cli, "cancel", "--bot", str(bot["id"]), "--id", "32"], env=w.env, check=True)
    time.sleep(1.0)
    # Then what was left is cancelled and never arrives
    counts = w.statuses()
    assert counts["sent"] + counts["cancelled"] == 300 and counts["cancelled"] > 0
    time.sleep(1.0)
    assert sum(w.received(u["id"]).count("more news") for u in users) == counts["sent"] - 150


def test_a_paid_broadcast_goes_past_the_free_rate_within_its_budget_then_free(
    send_world: SendWorld,
) -> None:
    w = send_world
    # Given a bot that opted in to paid broadcasts (15 Stars a broadcast), 100 Stars at
    # Telegram, and 300 users
    bot, users = w.bot_with_users(300)
    budget = {"per_broadcast": 15, "per_day": 100}
    fleet.set_setting(w.settings, bot["id"], "paid_broadcasts", budget)
    w.sim.set_stars(bot["id"], 100)
    # When a broadcast to all of them is delivered
    w.queue([(bot["id"], u["id"], "sale") for u in users], broadcast_id=41)
    w.start_senders(1)
    w.wait_settled(300, timeout=60)
    # Then every user got it once, without a FLOOD_WAIT, faster than the free rate allows
    assert w.statuses() == Counter({"sent": 300}), w.log_tail()
    assert all(w.received(u["id"]) == ["sale"] for u in users)
    stats = w.sim.stats()
    assert stats["flood_errors"] == 0 and stats["counters"].get("duplicate_sends", 0) == 0
    times = sorted(r.sent_at.timestamp() for r in w.rows(bot["id"]) if r.sent_at)
    assert times[-1] - times[0] < (300 - 15) / 30 - 2
    # And Telegram charged no more than the budget, and no more than tgfleet recorded
    charged = w.sim.bot(bot["id"])["paid_messages"]
    with session_scope(w.settings, bot_id=bot["id"]) as s:
        recorded, stars = stars_spent(s, bot["id"], 41)
        line = broadcast_line(41, broadcasts.progress(s, bot["id"], 41))
    assert 100 <= charged <= recorded <= 150 and stars == pytest.approx(recorded / 10)
    assert f"{recorded} paid ({stars:.1f} Stars)" in line
    # When Telegram has only 0.5 Stars left for the next broadcast
    w.sim.set_stars(bot["id"], 0.5)
    w.queue([(bot["id"], u["id"], "last call") for u in users[:100]], broadcast_id=42)
    w.wait_settled(400, timeout=60)
    # Then Telegram's BALANCE_TOO_LOW sends it on at the free rate: all delivered once
    assert w.statuses() == Counter({"sent": 400}), w.log_tail()
    assert all(w.received(u["id"]).count("last call") == 1 for u in users[:100])
    assert w.sim.bot(bot["id"]) | {"stars": 0.0, "paid_messages": charged + 5} == w.sim.bot(
        bot["id"]
    )
    assert StarsLedger(redis.Redis.from_url(w.settings.redis_url)).is_out_of_stars(bot["id"])
    assert w.sim.stats()["flood_errors"] == 0


def test_forced_flood_wait_pauses_only_that_bot(send_world: SendWorld) -> None:
    w = send_world
    # Given two bots whose listeners saw 20 users, and Telegram flooding bot A for a while
    bot_a, bot_b = w.add_bot(), w.add_bot()
    users = [w.add_user(f"u{i}") for i in range(20)]
    for bot in (bot_a, bot_b):
        w.listener_saw(bot["id"], [u["id"] for u in users])
    items = [
        (bot["id"], u["id"], f"{bot['id']}:{u['id']}") for bot in (bot_a, bot_b) for u in users
    ]
    w.start_senders(1)
    flood_started = time.time()
    w.sim.force_flood(bot_a["id"], FLOOD_S)
    # When both bots' messages are queued for the running sender
    w.queue(items)
    w.wait_settled(len(items), timeout=60)
    # Then everything arrives once; bot B kept sending during A's pause; A resumed after it
    assert w.statuses() == Counter({"sent": 40}), w.log_tail()
    for user in users:
        assert sorted(w.received(user["id"])) == sorted(
            f"{b['id']}:{user['id']}" for b in (bot_a, bot_b)
        )
    b_done = max(r.sent_at for r in w.rows(bot_b["id"]) if r.sent_at)
    a_first = min(r.sent_at for r in w.rows(bot_a["id"]) if r.sent_at)
    assert b_done.timestamp() < flood_started + FLOOD_S <= a_first.timestamp() + 0.5
    # And the pause was shared: a handful of FLOOD_WAITs, not one per message
    assert 1 <= w.sim.stats()["flood_errors"] <= 8


def test_admin_known_only_to_the_store_gets_messages_unknown_user_goes_dead(
    send_world: SendWorld,
) -> None:
    w = send_world
    # Given an admin whom only the listener has seen (the entity store has the hash, the
    # sender's session never met them) and a user nobody has ever seen
    admin = w.add_user("admin")
    stranger = w.add_user("stranger")
    bot = w.add_bot(admins=[admin["id"]])
    w.listener_saw(bot["id"], [admin["id"]])
    # When the bot messages both
    [to_admin, to_stranger] = w.queue(
        [(bot["id"], admin["id"], "hello admin"), (bot["id"], stranger["id"], "hello?")]
    )
    w.start_senders(1)
    w.wait_settled(2, timeout=60)
    # Then the admin got it (resolved from the store: the seeds' bug is gone) ...
    rows = {r.id: r for r in w.rows(bot["id"])}
    assert rows[to_admin].status is OutboxStatus.SENT
    assert w.received(admin["id"])[0] == "hello admin"
    # ... and the stranger's message was retried, then went dead with a clear reason
    dead = rows[to_stranger]
    assert dead.status is OutboxStatus.DEAD, w.log_tail()
    assert dead.attempts == 3
    assert "cannot resolve chat" in (dead.last_error or "")
    assert "gave up after 3 attempts" in (dead.last_error or "")
    # ... and the admin was told, once
    w.wait_settled(3, timeout=30)
    notices = [t for t in w.received(admin["id"]) if "Could not deliver" in t]
    assert len(notices) == 1 and str(stranger["id"]) in notices[0]
    assert w.received(stranger["id"]) == []
    metrics = redis.Redis.from_url(w.settings.redis_url).hgetall("tgfleet:metrics:resolve")
    assert int(metrics[b"store"]) >= 1


def test_blocked_user_fails_without_retries_and_is_marked(send_world: SendWorld) -> None:
    w = send_world
    # Given a user who blocked the bot, and one who did not
    bot = w.add_bot()
    blocker, fan = w.add_user("blocker"), w.add_user("fan")
    w.listener_saw(bot["id"], [blocker["id"], fan["id"]])
    w.sim.block(blocker["id"], bot["id"])
    # When the bot messages both
    [to_blocker, to_fan] = w.queue([(bot["id"], blocker["id"], "hi"), (bot["id"], fan["id"], "hi")])
    w.start_senders(1)
    w.wait_settled(2, timeout=60)
    # Then the blocked send failed at once (no retries) and the user is marked blocked
    rows = {r.id: r for r in w.rows(bot["id"])}
    assert rows[to_fan].status is OutboxStatus.SENT
    failed = rows[to_blocker]
    assert (failed.status, failed.attempts) == (OutboxStatus.FAILED, 0)
    assert "blocked" in (failed.last_error or "")
    with session_scope(w.settings, bot_id=bot["id"]) as s:
        user = s.get(TgUser, (bot["id"], blocker["id"]))
        assert user is not None and user.is_blocked
    assert w.received(blocker["id"]) == []


@pytest.mark.parametrize(
    ("fault", "users_count"),
    [
        ("kill -9 a sender", 50),
        ("drop all connections", 50),
        # one message per user and bot: the sends go in batches
        ("kill -9 every sender", 150),
    ],
)
def test_faults_mid_batch_lose_nothing_and_duplicate_nothing(
    send_world: SendWorld, fault: str, users_count: int
) -> None:
    w = send_world
    # Given 2 bots, 50 users (3 messages each from each bot) or 150 users (one each),
    # 300 queued messages and 2 sender processes at work
    bots = [w.add_bot() for _ in range(2)]
    users = [w.add_user(f"u{i}") for i in range(users_count)]
    for bot in bots:
        w.listener_saw(bot["id"], [u["id"] for u in users])
    items = [(bots[i % 2]["id"], users[(i // 2) % users_count]["id"], f"m{i}") for i in range(300)]
    w.queue(items)
    victim, _ = w.start_senders(2)
    wait_until(
        lambda: w.statuses()["sent"] >= 80, 30, "80 sent messages", poll=0.05, detail=w.log_tail
    )
    # When a sender is killed with SIGKILL (or the server drops every connection)
    if fault == "kill -9 a sender":
        os.kill(victim.process.pid, signal.SIGKILL)
    elif fault == "kill -9 every sender":
        for child in list(w.workers):
            os.kill(child.process.pid, signal.SIGKILL)
        w.start_senders(1)  # a fresh one: no task of the killed ones ever reaches it
    else:
        assert w.sim.drop_connections() >= 1
    # Then every message still arrives, exactly once
    w.wait_settled(300, timeout=90)
    assert w.statuses() == Counter({"sent": 300}), w.log_tail()
    expected: dict[int, Counter[str]] = {}
    for _, user_id, text in items:
        expected.setdefault(user_id, Counter())[text] += 1
    for user in users:
        assert Counter(w.received(user["id"])) == expected[user["id"]]
    if fault.startswith("kill"):
        # (what the killed workers held came back: their tasks from the consumer registry,
        # their claimed rows through the sweep)
        def recovered() -> bool:
            survivor = w.workers[-1].log_path.read_text()
            return "reclaimed" in survivor or "had lost their task" in survivor

        wait_until(recovered, 30, "the killed sender's work handed back", detail=w.log_tail)


def test_node_session_is_stored_reused_after_restart_and_renewed_when_forgotten(
    send_world: SendWorld,
) -> None:
    w = send_world
    # Given a bot that sent once from this node (markdown, and a text over 4096 characters)
    bot, user = w.add_bot(), w.add_user("reader")
    w.listener_saw(bot["id"], [user["id"]])
    parts = ["a" * 4096, "b" * 4096, "c" * 100]
    long_text = "".join(parts)
    w.queue([(bot["id"], user["id"], "**bold** move")], parse_mode="markdown")
    w.queue([(bot["id"], user["id"], long_text)])
    [first] = w.start_senders(1)
    w.wait_settled(4, timeout=60)
    got = w.received(user["id"])
    assert sorted(got) == sorted(["bold move", *parts])
    assert [t for t in got if t != "bold move"] == parts  # a text's parts arrive in order
    assert "logged in on node" in first.log_path.read_text()
    # Then its session is stored for this node, encrypted (neither token nor session in clear)
    with session_scope(w.settings, bot_id=bot["id"]) as s:
        [stored] = s.scalars(select(BotSession).where(BotSession.bot_id == bot["id"])).all()
    assert stored.node == w.env["TGFLEET_NODE_NAME"]
    assert bot["token"].encode() not in stored.session_encrypted
    session = decrypt_secret(w.settings, stored.session_encrypted).decode()
    assert len(session) > 100 and session.encode() not in stored.session_encrypted
    # When the worker stops cleanly and another starts on the same node
    first.process.terminate()
    first.process.wait(30)
    assert "disconnecting clients" in first.log_path.read_text()
    keys_before = w.sim.stats()["authorized_keys"]
    [second] = w.start_senders(1)
    w.queue([(bot["id"], user["id"], "again")])
    w.wait_settled(5, timeout=60)
    # Then it sends with the stored session: no new login, no new authorised key
    assert w.received(user["id"])[-1] == "again"
    assert "logged in on node" not in second.log_path.read_text()
    assert w.sim.stats()["authorized_keys"] == keys_before
    # When Telegram forgets the stored session's auth key and a third worker starts
    second.process.terminate()
    second.process.wait(30)
    assert w.sim.forget_auth_keys(bot["id"]) >= 1
    [third] = w.start_senders(1)
    w.queue([(bot["id"], user["id"], "once more")])
    w.wait_settled(6, timeout=60)
    # Then it logs in again (a new key), sends, and stores the new session in place
    assert w.received(user["id"])[-1] == "once more"
    log = third.log_path.read_text()
    assert "does not know the stored session's auth key" in log and "logged in on node" in log
    with session_scope(w.settings, bot_id=bot["id"]) as s:
        [renewed] = s.scalars(select(BotSession).where(BotSession.bot_id == bot["id"])).all()
    assert decrypt_secret(w.settings, renewed.session_encrypted).decode() != session


def test_photo_with_caption_and_reply_is_delivered(send_world: SendWorld) -> None:
    w = send_world
    # Given a photo the bot's listener saw (id, access hash, file reference) and a user
    bot, user = w.add_bot(), w.add_user("viewer")
    w.listener_saw(bot["id"], [user["id"]])
    photo = w.sim.call(lambda: w.sim.sim.world.add_photo())
    [inbound] = w.sim.send(user["id"], bot["id"], "show me")
    reference = base64.b64encode(photo.file_reference).decode()
    # When a handler queues it with an html caption as a reply
    w.queue(
        [(bot["id"], user["id"], "<b>Ann</b>, 30")],
        parse_mode="html",
        reply_to=inbound["id"],
        media={"photo": [photo.id, photo.access_hash, reference]},
    )
    w.start_senders(1)
    w.wait_settled(1, timeout=60)
    # Then the user got the photo with the caption's text, as a reply
    [got] = w.sim.received(user["id"])
    assert got["media"] == {"type": "photo", "id": photo.id}, w.log_tail()
    assert (got["text"], got["reply_to"]) == ("Ann, 30", inbound["id"])


def test_a_stale_access_hash_is_dropped_and_the_user_resolved_again(
    send_world: SendWorld,
) -> None:
    w = send_world
    # Given a user with a username whose access hash the entity store holds
    ann = w.add_user("Ann", username="ann_rehashed")
    bot = w.add_bot()
    w.listener_saw(bot["id"], [ann["id"]])
    with session_scope(w.settings, bot_id=bot["id"]) as s:
        s.execute(
            update(Entity)
            .where(Entity.bot_id == bot["id"], Entity.peer_id == ann["id"])
            .values(username="ann_rehashed")
        )
    stale = w.access_hash(bot["id"], ann["id"])
    # When that hash goes stale (Telegram answers PEER_ID_INVALID to it, through the
    # sender's invokeWithoutUpdates like any call) and the bot messages her
    w.sim.rehash_user(ann["id"])
    [row_id] = w.queue([(bot["id"], ann["id"], "hello again")])
    w.start_senders(1)
    w.wait_settled(1, timeout=60)
    # Then the stale hash was dropped, not retried: she was found again by her username,
    # the message arrived, and the store holds her new hash
    row = next(r for r in w.rows(bot["id"]) if r.id == row_id)
    assert row.status is OutboxStatus.SENT, (row.last_error, w.log_tail())
    assert w.received(ann["id"]) == ["hello again"]
    with session_scope(w.settings, bot_id=bot["id"]) as s:
        stored = s.execute(
            select(Entity.access_hash).where(
                Entity.bot_id == bot["id"], Entity.peer_id == ann["id"]
            )
        ).scalar_one()
    assert stored == w.access_hash(bot["id"], ann["id"]) != stale


def test_a_sender_rides_out_a_redis_restart_mid_broadcast(
    send_world: SendWorld, dev_services: DevServices
) -> None:
    w = send_world
    # Given 3 bots, each sending to 100 users, and one sender working through it
    bots = [w.add_bot() for _ in range(3)]
    users = [w.add_user(f"r{i}") for i in range(100)]
    for bot in bots:
        w.listener_saw(bot["id"], [u["id"] for u in users])
    w.queue([(bot["id"], user["id"], f"from {bot['id']}") for bot in bots for user in users])
    (sender,) = w.start_senders(1)
    wait_until(lambda: w.statuses()["sent"] >= 30, 60, "the first sends")
    # When Redis restarts while the sender holds tasks
    restart_redis(dev_services, downtime=2.0)
    # Then every message arrives once
    w.wait_settled(300, timeout=120)
    assert w.statuses() == Counter({"sent": 300}), w.log_tail()
    for user in users:
        assert sorted(w.received(user["id"])) == sorted(f"from {b['id']}" for b in bots)
    # And the sender served on: kombu's close after the broker went away no longer ends it
    # (AttributeError: 'NoneType' object has no attribute 'hostname')
    log = sender.log_path.read_text(errors="replace")
    assert sender.alive, w.log_tail()
    assert "Unrecoverable error" not in log


def test_replies_go_in_rounds_once_each_in_order_behind_a_retrying_one_tasks_lost(
    send_world: SendWorld,
) -> None:
    w = send_world
    bot, users = w.bot_with_users(40)
    first = users[0]["id"]
    # Given a reply to the first user that failed once and is retrying in 2 s
    [held] = w.queue([(bot["id"], first, "first")])
    with session_scope(w.settings, bot_id=bot["id"]) as s:
        s.execute(
            update(Outbox)
            .where(Outbox.bot_id == bot["id"], Outbox.id == held)
            .values(status=OutboxStatus.RETRYING, next_attempt_at=func.now() + timedelta(seconds=2))
        )
    enqueue_deliveries([(held, bot["id"], first)], countdown=2.0)
    # And three handler runs' replies to every user, each run committed on its own
    # (the first user's two follow the retrying one)
    for n in range(3):
        w.queue([(bot["id"], u["id"], f"{n}") for u in users if n < 2 or u["id"] != first])
    # And every task was lost (the bot's flag says its task is pending)
    client = redis.Redis.from_url(w.settings.redis_url)
    client.delete("sends")
    assert client.exists(wake.flag_key(bot["id"]))
    # When 2 senders start
    w.start_senders(2)
    total = 1 + 3 * len(users) - 1
    w.wait_settled(total, timeout=90)
    # Then the sweep found it all: each arrived once, every user's in the order they were
    # written, the first user's behind the one that was retrying
    assert w.statuses() == Counter({"sent": total}), w.log_tail()
    assert w.received(first) == ["first", "0", "1"]
    for user in users[1:]:
        assert w.received(user["id"]) == ["0", "1", "2"]
    stats = w.sim.stats()
    assert stats["flood_errors"] == 0
    assert stats["counters"].get("duplicate_sends", 0) == 0
    # And the replies went in rounds: fewer rounds than replies
    metrics = client.hgetall("tgfleet:metrics:sends")
    rounds, batched = int(metrics[b"ready_rounds"]), int(metrics[b"batched"])
    assert batched == total - 1 and rounds < batched / 2, metrics
