"""How many connections a process's engines keep (no database needed to decide it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tgfleet.db import session as db_session
from tgfleet.db.session import DEFAULT_POOL_SIZE, POOL_SPARE, expect_threads, pool_size
from tgfleet.platform.settings import Settings


@pytest.fixture(autouse=True)
def _threads_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    # expect_threads is process-wide: each test starts from, and leaves, what was there
    monkeypatch.setattr(db_session, "_expected_threads", 0)


def test_a_process_keeps_the_default_until_told_of_its_threads(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    assert pool_size(settings) == DEFAULT_POOL_SIZE == 5
    # a threads-pool worker of 8 keeps one for each thread and the few beside them
    expect_threads(8)
    assert pool_size(settings) == 8 + POOL_SPARE == 12
    # a small one still keeps the default
    expect_threads(1)
    assert pool_size(settings) == DEFAULT_POOL_SIZE


def test_the_setting_wins_over_the_threads(make_settings: Callable[..., Settings]) -> None:
    expect_threads(16)
    assert pool_size(make_settings(TGFLEET_DB_POOL_SIZE="7")) == 7


def test_a_count_of_no_threads_is_refused() -> None:
    with pytest.raises(ValueError, match="positive count, not 0"):
        expect_threads(0)
