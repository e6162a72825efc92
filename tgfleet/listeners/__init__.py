"""Listeners: ``tgfleet listen`` hosts many bots' Telethon clients and turns every update
into a ``tgfleet.updates.handle`` task (see docs/ingest.md)."""

from tgfleet.listeners.process import ListenerProcess, ListenOptions, run_listener
from tgfleet.platform.envelope import Envelope, EnvelopeError, decode, encode
from tgfleet.platform.lease import Lease, LeaseStore

__all__ = [
    "Envelope",
    "EnvelopeError",
    "Lease",
    "LeaseStore",
    "ListenOptions",
    "ListenerProcess",
    "decode",
    "encode",
    "run_listener",
]
