"""A listening listener whose PostgreSQL goes away and comes back keeps running: updates
still reach the workers while its database is down, and it saves its update state once
the database is back. No restart needed.

The outage is a TCP forwarder between the listener and the session's PostgreSQL that
refuses new connections and drops open ones while cut (the workers and the test keep
the database)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.databases import query
from tests.support.waiting import wait_until
from tgfleet.db import fleet
from tgfleet.dev.host import free_port
from tgfleet.dev.processes import Child, ProcessGroup
from tgfleet.platform.settings import Settings


class CuttableLink:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut()`` drops every connection and
    refuses new ones (as a stopped server would) until ``restore()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._up = threading.Event()
        self.restore()

    def restore(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR on POSIX
        server.settimeout(0.1)
        self._up.set()
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        with server:
            while self._up.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.target)
                with self._lock:
                    self._open += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def link(sim_settings: Settings) -> Iterator[CuttableLink]:
    database = urlsplit(sim_settings.database_url)
    link = CuttableLink((database.hostname or "127.0.0.1", database.port or 5432))
    yield link
    link.cut()


def handled(settings: Settings, bot: int) -> set[str]:
    rows = query(
        settings,
        "SELECT text FROM messages WHERE bot_id = %s AND direction = 'in' "
        "AND processed_at IS NOT NULL",
        bot,
    )
    return {text for (text,) in rows}


def test_a_listener_rides_out_its_database_going_away(
    sim_settings: Settings,
    sim_env: dict[str, str],
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_worker: Callable[..., Child],
    link: CuttableLink,
    tmp_path: Path,
) -> None:
    # Given a listener that reaches PostgreSQL through the link, and a worker that
    # reaches it directly, handling the first message of an echo bot
    bot = make_bot(app="echo")["id"]
    user = simulator.create_user("Ola")["id"]
    start_worker(queues="updates", concurrency=1, extra_env=sim_env)
    database = urlsplit(sim_settings.database_url)
    linked = database._replace(netloc=f"{database.netloc.rsplit(':', 1)[0]}:{link.port}")
    group = ProcessGroup(tmp_path / "logs", {**sim_env, "DATABASE_URL": linked.geturl()})
    try:
        listener = group.start(
            "listener", [sys.executable, "-m", "tgfleet", "listen", "--bots", str(bot)]
        )

        def log() -> str:
            text = listener.log_path.read_text(errors="replace")
            assert listener.alive, text[-3000:]  # fail at once if it died
            return text

        wait_until(lambda: f"listening for bot {bot}" in log(), 60, "the listener")
        simulator.send(user, bot, "before")
        wait_until(lambda: "before" in handled(sim_settings, bot), 60, "the first message")
        saved = wait_until(lambda: fleet.load_update_state(sim_settings, bot), 30, "a state")
        # When its database goes away and a message comes (its update state moves and
        # cannot be saved) for several reconcile rounds
        link.cut()
        simulator.send(user, bot, "during")
        wait_until(
            lambda: log().count(f"cannot save the update state of bots [{bot}]") >= 2,
            60,
            "two rounds without the database",
        )
        # Then it is still running, and the message reached the worker all the same
        wait_until(lambda: "during" in handled(sim_settings, bot), 60, "the second message")
        assert listener.alive and listener.restarts == 0
        # When the database is back, the update state it kept is saved
        link.restore()
        wait_until(
            lambda: (fleet.load_update_state(sim_settings, bot) or saved).pts > saved.pts,
            60,
            "the update state to be saved",
        )
        assert listener.alive
    finally:
        group.stop()
