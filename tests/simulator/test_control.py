"""The control surface: HTTP JSON API, persistence across restarts, the standalone CLI,
and the three TCP transports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telethon import events
from telethon.network import (
    ConnectionTcpAbridged,
    ConnectionTcpFull,
    ConnectionTcpIntermediate,
)

from tests.support.simulator import World, collect
from tests.support.waiting import wait_until, wait_until_async
from tgfleet.simulator import (
    SimulatorApiError,
    SimulatorClient,
    SimulatorThread,
    new_client,
    session_for,
)

pytestmark = pytest.mark.timeout(60)


def test_http_control_api_round_trip(sim: SimulatorThread, tmp_path: Path) -> None:
    # Given a simulator's control API, used as another process would use it
    api = SimulatorClient(sim.base_url)
    # When bots and users are created, limits set, faults injected and the key written
    bot = api.create_bot(username="round_bot", first_name="Round")
    user = api.create_user("Zoe", username="zoe_user")
    sent = api.send(user["id"], bot["id"], "hi {i}", count=2)
    limits = api.set_limits(bot_rate=5, private_chat_burst=1)
    api.force_flood(bot["id"], 1)
    api.stall(0)
    api.refuse_connections(0)
    pem_path = api.write_rsa_key(tmp_path / "sim.pem")
    # Then every answer reflects the change
    assert bot["token"].startswith(f"{bot['id']}:") and len(bot["token"].split(":")[1]) >= 30
    assert [b["username"] for b in api.bots()] == ["round_bot"]
    assert [u["username"] for u in api.users()] == ["zoe_user"]
    assert [m["id"] for m in sent] == [1, 2]
    assert (limits["bot_rate"], limits["private_chat_burst"]) == (5.0, 1)
    assert api.received(user["id"]) == []
    assert pem_path.read_text().startswith("-----BEGIN RSA PUBLIC KEY-----")
    assert api.rsa_public_pem() == pem_path.read_text()
    assert api.stats()["counters"]["user_messages"] == 2
    # And errors come back as SimulatorApiError with the HTTP status
    with pytest.raises(SimulatorApiError) as caught:
        api.send(999, bot["id"], "nobody")
    assert caught.value.status == 404
    with pytest.raises(SimulatorApiError) as caught:
        api.set_limits(warp_speed=9)
    assert caught.value.status == 400


def test_state_persists_across_restart(tmp_path: Path, run: Callable[..., Any]) -> None:
    # Given a simulator with a state file, a bot whose session saw a message, and a user
    state = tmp_path / "sim.json"
    with SimulatorThread(state_path=state) as first:
        bot = first.create_bot(username="keep_bot")
        user = first.create_user("Kim", username="kim_user")
        group = first.create_group("Kept", [user["id"], bot["id"]])
        pem, port = first.public_pem, first.port
        w = World(first, bot, user)

        async def login() -> str:
            client = await w.bot_client()
            await client.catch_up()
            await asyncio.to_thread(first.send, user["id"], bot["id"], "first life")
            await client.send_message(await client.get_input_entity("kim_user"), "hello kim")
            session = client.session.save()
            await client.disconnect()
            return str(session)

        session_string = run(login())
    # When a new simulator starts from the same state file, on the same port
    with SimulatorThread(state_path=state, port=port) as second:
        # Then bots, users, received messages, the RSA key and the auth key survive
        assert second.public_pem == pem
        assert [b["token"] for b in second.bots()] == [bot["token"]]
        assert [m["text"] for m in second.received(user["id"])] == ["hello kim"]
        assert second.groups() == [group]

        async def resume() -> tuple[int, list[Any]]:
            client = new_client(second.host, second.port, pem, session=session_string)
            await client.connect()
            try:
                me = await client.get_me()  # no new login: the auth key is still authorised
                kim = await client.get_input_entity("kim_user")
                history = await client.get_messages(kim, ids=[1, 2])
                return me.id, [m.text for m in history]
            finally:
                await client.disconnect()

        me_id, texts = run(resume())
        assert me_id == bot["id"]
        assert texts == ["first life", "hello kim"]


@pytest.mark.parametrize(
    "connection", [ConnectionTcpFull, ConnectionTcpIntermediate, ConnectionTcpAbridged]
)
def test_every_tcp_transport_works(world: World, run: Callable[..., Any], connection: Any) -> None:
    # Given a client using one of the three TCP transports
    async def scenario() -> list[str]:
        client = await world.bot_client(connection=connection)
        seen: list[str] = []
        client.add_event_handler(collect(seen), events.NewMessage())
        await client.catch_up()
        try:
            # When a user writes and the bot answers
            await asyncio.to_thread(world.sim.send, world.user["id"], world.bot["id"], "hey")
            await wait_until_async(lambda: seen == ["hey"], 5, "the bot to hear 'hey'")
            await client.send_message(world.user["id"], "ho")
            return seen
        finally:
            await client.disconnect()

    # Then both directions work
    assert run(scenario()) == ["hey"]
    assert [m["text"] for m in world.sim.received(world.user["id"])] == ["ho"]


def test_standalone_cli_serves_and_writes_its_key(tmp_path: Path) -> None:
    # Given `python -m tgfleet.simulator run` with a state file and a key path
    pem = tmp_path / "key.pem"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tgfleet.simulator",
            "run",
            "--state",
            str(tmp_path / "s.json"),
            "--rsa-key-out",
            str(pem),
            "--no-limits",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # When it starts, Then it prints both addresses and the control API answers
        line = proc.stdout.readline()
        assert line.startswith("tgfleet simulator: mtproto=127.0.0.1:")
        api = SimulatorClient(line.rsplit("control=", 1)[1].strip())
        assert api.limits()["enabled"] is False
        assert api.address[1] == int(line.split("mtproto=127.0.0.1:")[1].split()[0])
        assert pem.read_text() == api.rsa_public_pem()
        assert session_for("127.0.0.1", api.address[1]).port == api.address[1]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    # And the state was written on the way out
    wait_until(lambda: (tmp_path / "s.json").exists(), 5, "the state file", poll=0.05)
    assert (tmp_path / "s.json").exists()


def test_push_and_hash_faults_check_their_input(sim: SimulatorThread) -> None:
    # Given a bot and a user
    bot, user = sim.create_bot(), sim.create_user("Zoe")
    # When faults are asked for with bad input, Then the control API refuses them
    bad_calls: list[tuple[Callable[[], Any], int]] = [
        (lambda: sim.hold_pushes(bot["id"], 1, then="later"), 400),
        (lambda: sim.release_pushes(bot["id"], then="later"), 400),
        (lambda: sim.flood_method(bot["id"], "resolve username", 5), 400),
        (lambda: sim.flood_method(999, "users.getUsers", 5), 404),
        (lambda: sim.rehash_user(999), 404),
        (lambda: sim.rehash_user(user["id"], 999), 404),
    ]
    statuses = []
    for call, _ in bad_calls:
        with pytest.raises(SimulatorApiError) as caught:
            call()
        statuses.append(caught.value.status)
    assert statuses == [status for _, status in bad_calls]
    # and releasing a bot that is not held releases nothing
    assert sim.release_pushes(bot["id"]) == 0
