"""Whether and when a failed activity attempt is tried again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .commands import RetryPolicy


def retry_delay_ms(policy: RetryPolicy, *, attempt: int, failure: dict[str, Any],
                   now: datetime, deadline: datetime | None) -> int | None:
    """The back-off before the next attempt, or None when the activity has failed for good.

    ``attempt`` is the attempt that just failed (1 for the first). ``deadline`` is the
    activity's schedule-to-close deadline, if it has one: a retry that would start after it
    is not made.
    """
    if failure.get("non_retryable"):
        return None
    if failure.get("type") in policy.non_retryable_error_types:
        return None
    if policy.maximum_attempts and attempt >= policy.maximum_attempts:
        return None
    delay = policy.backoff_ms(attempt)
    if deadline is not None and now + timedelta(milliseconds=delay) >= deadline:
        return None
    return delay
