"""This process's Sender: made on first use with its sweep, closed at shutdown.

A sender worker (``celery -A tgfleet worker -Q sends -P threads``) hosts one Sender:
one asyncio loop thread with every bot's Telethon client, shared by the pool's
threads. ``get_sender`` makes it (and starts the sweep) on first use;
``close_sender`` disconnects the clients.
"""

from __future__ import annotations

import logging
import threading

from tgfleet.platform.settings import Settings
from tgfleet.sends.sender import Sender
from tgfleet.sends.sweep import Sweeper

log = logging.getLogger(__name__)

_current: tuple[Sender, Sweeper] | None = None
_lock = threading.Lock()


def get_sender(settings: Settings) -> Sender:
    """This process's Sender (made on first use, with its sweep thread)."""
    global _current
    with _lock:
        if _current is None:
            sender = Sender(settings)
            sweeper = Sweeper(sender)
            sweeper.start()
            _current = (sender, sweeper)
        return _current[0]


def close_sender() -> None:
    """Stop the sweep and disconnect this process's clients (no-op without a Sender)."""
    global _current
    with _lock:
        current, _current = _current, None
    if current is not None:
        sender, sweeper = current
        sweeper.stop()
        log.info("sender: disconnecting clients")
        sender.close()
