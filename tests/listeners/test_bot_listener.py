"""A listener's stored session: kept through a network failure, dropped only when invalid.

Real ``tgfleet listen`` processes against the simulator (a real MTProto server) and the
session store in PostgreSQL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from telethon.crypto import AuthKey
from telethon.sessions import StringSession

from tests.support.running import listening
from tests.support.waiting import wait_for_log, wait_until
from tgfleet.db import fleet
from tgfleet.dev.host import port_open
from tgfleet.dev.processes import Child
from tgfleet.listeners.bot_listener import NODE_ROLE
from tgfleet.platform.settings import Settings
from tgfleet.simulator import SimulatorClient

NODE = fleet.node_name(NODE_ROLE)
#: How long the simulator stays down: longer than Telethon's connection retries.
OUTAGE_S = 16.0


def _listen_once(start_listener: Callable[..., Child], bot_id: int) -> None:
    """Run a listener for ``bot_id`` until it listens, then stop it."""
    listening(start_listener, bot_id).stop()


def test_a_network_failure_at_start_keeps_the_stored_session(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
) -> None:
    # Given a bot whose listener logged in once on this node (its session is stored)
    bot_id = int(make_bot(app="echo")["id"])
    _listen_once(start_listener, bot_id)
    stored = fleet.load_session(sim_settings, bot_id, NODE)
    assert stored is not None
    keys_made = simulator.stats()["counters"]["auth_keys_created"]
    # When the server is down (its port closed) while a listener starts
    outage = threading.Thread(
        target=SimulatorClient(simulator.base_url, timeout=120).restart, args=(OUTAGE_S,)
    )
    outage.start()
    try:
        wait_until(lambda: not port_open(simulator.port), 10, "the simulator's port to close")
        listener = start_listener(bots=[bot_id])
        wait_for_log(listener, f"bot {bot_id} could not start", OUTAGE_S)
        listener.stop()
    finally:
        outage.join()
    # Then the stored session is the same one
    assert fleet.load_session(sim_settings, bot_id, NODE) == stored
    # And the next listener uses it: no new auth key, no new login
    _listen_once(start_listener, bot_id)
    assert fleet.load_session(sim_settings, bot_id, NODE) == stored
    assert simulator.stats()["counters"]["auth_keys_created"] == keys_made


def test_a_session_the_server_does_not_know_is_dropped_and_the_bot_logs_in_again(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
) -> None:
    # Given a bot whose stored session holds an auth key the server has never seen
    # (a server that lost its state, or a key Telegram destroyed)
    bot_id = int(make_bot(app="echo")["id"])
    _listen_once(start_listener, bot_id)
    forgotten = StringSession()
    forgotten.set_dc(2, simulator.host, simulator.port)
    forgotten.auth_key = AuthKey(os.urandom(256))
    fleet.save_session(sim_settings, bot_id, NODE, forgotten.save())
    # When a listener starts with it
    listener = start_listener(bots=[bot_id])
    # Then it drops the session, logs in again with the token at once and listens
    wait_for_log(listener, "stored session is no longer valid", 60)
    wait_for_log(listener, f"listening for bot {bot_id}", 30)
    assert "could not start" not in listener.log_path.read_text()
    renewed = fleet.load_session(sim_settings, bot_id, NODE)
    assert renewed is not None and renewed != forgotten.save()
