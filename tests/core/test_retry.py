"""Whether and when a failed activity attempt is tried again."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.core.commands import RetryPolicy
from workflows.core.retry import retry_delay_ms

from .strategies import T0

FAILURE = {"type": "IOError", "message": "flaky"}


def delay(policy: RetryPolicy, attempt: int, failure: dict[str, object] | None = None,
          deadline_ms: int | None = None) -> int | None:
    deadline = None if deadline_ms is None else T0 + timedelta(milliseconds=deadline_ms)
    return retry_delay_ms(policy, attempt=attempt, failure=failure or FAILURE, now=T0,
                          deadline=deadline)


def test_retries_with_the_policy_back_off() -> None:
    policy = RetryPolicy()
    assert [delay(policy, n) for n in (1, 2, 3, 20)] == [1000, 2000, 4000, 100_000]


def test_a_non_retryable_failure_is_final() -> None:
    assert delay(RetryPolicy(), 1, {"type": "IOError", "non_retryable": True}) is None
    assert delay(RetryPolicy(), 1, {"type": "IOError", "non_retryable": False}) == 1000


def test_non_retryable_error_types_are_final() -> None:
    policy = RetryPolicy(non_retryable_error_types=("ValueError", "KeyError"))
    assert delay(policy, 1, {"type": "KeyError"}) is None
    assert delay(policy, 1, {"type": "ValueError"}) is None
    assert delay(policy, 1, {"type": "ValueErrorX"}) == 1000
    assert delay(policy, 1, {"message": "no type"}) == 1000


def test_maximum_attempts_counts_the_attempt_that_failed() -> None:
    policy = RetryPolicy(maximum_attempts=3)
    assert delay(policy, 1) == 1000
    assert delay(policy, 2) == 2000
    assert delay(policy, 3) is None
    assert delay(policy, 4) is None
    assert delay(RetryPolicy(maximum_attempts=1), 1) is None
    assert delay(RetryPolicy(maximum_attempts=0), 500) == 100_000  # 0 means unlimited


def test_no_retry_that_would_start_at_or_after_the_schedule_to_close_deadline() -> None:
    policy = RetryPolicy(initial_interval_ms=1000)
    assert delay(policy, 1, deadline_ms=1001) == 1000
    assert delay(policy, 1, deadline_ms=1000) is None
    assert delay(policy, 1, deadline_ms=10) is None
    assert delay(policy, 2, deadline_ms=1500) is None
    assert delay(policy, 2, deadline_ms=-5) is None


@given(st.integers(1, 300), st.integers(0, 300), st.booleans(),
       st.none() | st.integers(-1000, 10**6))
@settings(max_examples=200)
def test_retry_delay_is_the_back_off_or_none(attempt: int, maximum: int, non_retryable: bool,
                                             deadline_ms: int | None) -> None:
    policy = RetryPolicy(initial_interval_ms=10, maximum_attempts=maximum)
    result = delay(policy, attempt, {"type": "E", "non_retryable": non_retryable}, deadline_ms)
    final = (non_retryable or (maximum and attempt >= maximum)
             or (deadline_ms is not None and policy.backoff_ms(attempt) >= deadline_ms))
    assert result == (None if final else policy.backoff_ms(attempt))
