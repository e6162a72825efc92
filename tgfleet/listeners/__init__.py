"""Listeners: ``tgfleet listen`` hosts many bots' Telethon clients and turns every update
into a ``tgfleet.updates.handle`` task (see docs/ingest.md)."""

from tgfleet.listeners.envelope import Envelope, EnvelopeError, decode, encode
from tgfleet.listeners.lease import Lease, LeaseStore
from tgfleet.listeners.process import ListenerProcess, ListenOptions, run_listener

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
