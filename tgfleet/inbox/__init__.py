"""The inbox: worker-side ingest. Updates are recorded once and handled in order, once.

- ``record``: what an envelope stores, idempotently, and what a handler is given;
- ``drain``: the per-chat ordered drain that runs handlers exactly once in effect;
- ``handle``: one envelope (or a listener's batch) from decode to drained chat, with a
  typed result; what the ``updates`` tasks call;
- ``deadletter``: bad input kept with its reason.

The peers updates bring go to the entity store (``tgfleet.db.entities``).
"""

from tgfleet.inbox.deadletter import dead_letter
from tgfleet.inbox.drain import DrainResult, chat_lock_key, drain_chat, record_and_handle
from tgfleet.inbox.handle import (
    BatchResult,
    HandleResult,
    Outcome,
    handle_envelope,
    handle_envelopes,
    record_entities,
)
from tgfleet.inbox.record import CHAIN_STALL_S, Handler, HandlerEffects, InboundMessage

__all__ = [
    "CHAIN_STALL_S",
    "BatchResult",
    "DrainResult",
    "HandleResult",
    "Handler",
    "HandlerEffects",
    "InboundMessage",
    "Outcome",
    "chat_lock_key",
    "dead_letter",
    "drain_chat",
    "handle_envelope",
    "handle_envelopes",
    "record_and_handle",
    "record_entities",
]
