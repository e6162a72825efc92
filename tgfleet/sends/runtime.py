"""This process's Sender: made on first use with its sweep and scheduler, closed at
shutdown.

A sender worker (``celery -A tgfleet worker -Q sends -P threads``) hosts one Sender:
one asyncio loop thread with every bot's Telethon client, shared by the pool's
threads. ``get_sender`` makes it (and starts the sweep and the scheduler of scheduled
sends) on first use; ``close_sender`` stops them and disconnects the clients.
"""

from __future__ import annotations

import logging
import threading

from tgfleet.platform.settings import Settings
from tgfleet.sends.schedule import Scheduler
from tgfleet.sends.sender import Sender
from tgfleet.sends.sweep import Sweeper

log = logging.getLogger(__name__)

_current: tuple[Sender, Sweeper, Scheduler] | None = None
_lock = threading.Lock()


def get_sender(settings: Settings) -> Sender:
    """This process's Sender (made on first use, with its sweep thread)."""
    global _current
    with _lock:
        if _current is None:
            sender = Sender(settings)
            sweeper = Sweeper(sender)
            sweeper.start()
            scheduler = Scheduler(settings)
            scheduler.start()
            _current = (sender, sweeper, scheduler)
        return _current[0]


def close_sender() -> None:
    """Stop the sweep and the scheduler, disconnect this process's clients (no-op
    without a Sender)."""
    global _current
    with _lock:
        current, _current = _current, None
    if current is not None:
        sender, sweeper, scheduler = current
        sweeper.stop()
        scheduler.stop()
        log.info("sender: disconnecting clients")
        sender.close()
