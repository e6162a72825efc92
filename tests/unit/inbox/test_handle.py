"""The inbox's typed results: what a task returns (its str) and what a batch adds up to."""

from __future__ import annotations

import pytest

from tgfleet.inbox.handle import BatchResult, HandleResult, Outcome


@pytest.mark.parametrize(
    ("result", "text"),
    [
        (HandleResult(Outcome.PROCESSED, processed=3, dead=1), "processed=3 dead=1"),
        (HandleResult(Outcome.PROCESSED), "processed=0 dead=0"),
        (HandleResult(Outcome.RECORDED), "recorded"),
        (HandleResult(Outcome.DUPLICATE), "duplicate"),
        (HandleResult(Outcome.DEAD), "dead"),
    ],
)
def test_a_result_reads_as_its_outcome(result: HandleResult, text: str) -> None:
    assert str(result) == text


def test_a_batch_adds_up_its_envelopes() -> None:
    # Given a batch's results: two drains (one unblocking a dead message), a recorded
    # name change, a replay and a bad envelope
    batch = BatchResult()
    for result in (
        HandleResult(Outcome.PROCESSED, processed=2, dead=1),
        HandleResult(Outcome.PROCESSED, processed=1),
        HandleResult(Outcome.RECORDED),
        HandleResult(Outcome.DUPLICATE),
        HandleResult(Outcome.DEAD),
    ):
        batch.add(result)
    batch.deferred.append(({"key": "m:1:9"}, 1.0))
    # Then the counts add up (a dead envelope and a dead message count alike)
    assert (batch.processed, batch.dead, batch.recorded, batch.duplicate) == (3, 2, 1, 1)
    # And the task's return value lists the non-zero counts by name
    assert str(batch) == "dead=2 deferred=1 duplicate=1 processed=3 recorded=1"


def test_an_empty_batch_reads_as_nothing() -> None:
    assert str(BatchResult()) == ""


def test_a_batch_of_duplicates_shows_only_those() -> None:
    batch = BatchResult()
    batch.add(HandleResult(Outcome.DUPLICATE))
    batch.add(HandleResult(Outcome.DUPLICATE))
    assert str(batch) == "duplicate=2"
