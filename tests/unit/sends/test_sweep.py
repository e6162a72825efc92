"""How long a task now waits in the sends queue, from its length and the send rate: the
sweep adds it to a row's grace so a busy queue is not mistaken for lost tasks."""

from __future__ import annotations

import pytest

from tgfleet.sends.sweep import MAX_QUEUE_DELAY_S, QueueDelay


def test_an_empty_queue_has_no_delay_even_at_first_sight() -> None:
    assert QueueDelay().from_counts(backlog=0, sent=0, now=100.0) == 0.0


def test_a_backlog_without_a_rate_yet_has_no_estimate() -> None:
    # The first look at a busy queue cannot tell late from lost: no estimate (skip)
    assert QueueDelay().from_counts(backlog=500, sent=1000, now=100.0) is None


@pytest.mark.parametrize(
    ("backlog", "sent_since", "seconds", "delay"),
    [
        (300, 600, 10.0, 10.0),  # 60 sends/s: 300 waiting take 5 s, twice that is the grace
        (30, 30, 10.0, 20.0),  # 3/s
        (10, 0, 10.0, 20.0),  # nothing sent: counted as 1/s, not as forever
        (10**7, 10, 10.0, MAX_QUEUE_DELAY_S),  # capped
    ],
)
def test_the_delay_is_twice_the_backlog_over_the_recent_rate(
    backlog: int, sent_since: int, seconds: float, delay: float
) -> None:
    # Given a first look, then a second one ``seconds`` later after ``sent_since`` sends
    estimate = QueueDelay()
    estimate.from_counts(backlog, sent=1000, now=50.0)
    # Then the delay follows the rate between the two looks
    assert estimate.from_counts(backlog, sent=1000 + sent_since, now=50.0 + seconds) == delay


def test_each_look_measures_from_the_one_before() -> None:
    estimate = QueueDelay()
    estimate.from_counts(100, sent=0, now=0.0)
    assert estimate.from_counts(100, sent=1000, now=10.0) == 2.0  # 100/s
    assert estimate.from_counts(100, sent=1100, now=20.0) == 20.0  # then 10/s


def test_a_clock_that_did_not_move_gives_no_estimate() -> None:
    estimate = QueueDelay()
    estimate.from_counts(100, sent=0, now=5.0)
    assert estimate.from_counts(100, sent=50, now=5.0) is None
