"""tgfleet.db.fleet on a real PostgreSQL: the update state and the chain tails saved with it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tgfleet.db import fleet
from tgfleet.db.fleet import SavedState
from tgfleet.platform.settings import Settings


@pytest.fixture
def bot_id(migrated: Settings) -> Iterator[int]:
    bot = uuid.uuid4().int % 10**9 + 10**9
    fleet.save_bot(migrated, f"{bot}:{'x' * 35}", name="fleet-test", admin_chat_ids=[])
    yield bot
    fleet.remove_bot(migrated, bot)


def test_chain_tails_are_saved_with_the_state_and_read_back_recent_oldest_first(
    migrated: Settings, bot_id: int
) -> None:
    # Given a state saved with three chats' tails, one of them older than the window
    now = time.time()
    tails = {7: (70, now - 5), 8: (81, now - 300), 9: (95, now - 10)}
    state = SavedState(10, 0, datetime.now(UTC), 0)
    fleet.save_update_state(migrated, bot_id, state, tails)
    # Then the state reads back, and the tails within the window, oldest first
    assert fleet.load_update_state(migrated, bot_id) == state
    recent = fleet.load_chain_tails(migrated, bot_id, max_age_s=120)
    assert list(recent.items()) == [(9, (95, now - 10)), (7, (70, now - 5))]
    # And an older state saved late changes neither (it never goes back)
    fleet.save_update_state(migrated, bot_id, SavedState(9, 0, None, 0), {7: (60, now)})
    assert fleet.load_chain_tails(migrated, bot_id, max_age_s=120)[7] == (70, now - 5)


def test_a_bot_without_saved_tails_has_none(migrated: Settings, bot_id: int) -> None:
    assert fleet.load_chain_tails(migrated, bot_id, max_age_s=120) == {}
    fleet.save_update_state(migrated, bot_id, SavedState(3, 0, None, 0))
    assert fleet.load_chain_tails(migrated, bot_id, max_age_s=120) == {}
