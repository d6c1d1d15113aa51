"""The outage breaker: an unreachable API stops the run; an item's own failures and slow answers do not."""

from batch_inpaint.breaker import OutageBreaker


def test_failures_in_a_row_for_long_enough_open_it() -> None:
    breaker = OutageBreaker(60.0, started=0.0)
    assert not breaker.failed(10.0)
    assert not breaker.failed(30.0)
    assert not breaker.failed(69.0)  # three failures, but only 59 s from the first
    assert breaker.failed(70.0)
    assert "60 s" in breaker.describe(70.0)


def test_any_answer_closes_it_again() -> None:
    breaker = OutageBreaker(60.0, started=0.0)
    for t in (10.0, 30.0):
        breaker.failed(t)
    breaker.answered(50.0)  # a 429 or a 400 shows the API is there
    assert not breaker.failed(71.0) and not breaker.failed(100.0)
    assert not breaker.failed(130.0)  # 59 s from the first failure after the answer
    assert breaker.failed(131.0)


def test_a_long_wait_before_the_failures_is_not_an_outage() -> None:
    """Our own 429 pauses or slow pace put time between answers; only the failures' own span counts."""
    breaker = OutageBreaker(60.0, started=0.0)
    breaker.answered(10.0)
    assert not any(breaker.failed(t) for t in (500.0, 501.0, 503.0))


def test_an_item_that_gave_up_with_no_answer_since_it_was_first_sent_means_an_outage() -> None:
    breaker = OutageBreaker(60.0, started=0.0)
    breaker.answered(5.0)
    assert breaker.gave_up(first_sent=6.0)
    assert not breaker.gave_up(first_sent=4.0)  # the API answered someone while this item was failing
