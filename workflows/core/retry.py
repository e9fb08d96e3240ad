"""Activity attempt rules: whether and when a failed attempt is tried again, and which
deadline an attempt that ran out of time passed.

Pure functions of the activity's options (as scheduled), its attempt and the clock; the
transitions in ``decide`` build on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .commands import RetryPolicy


def retry_delay_ms(policy: RetryPolicy, *, attempt: int, failure: Mapping[str, Any],
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


def schedule_to_close_deadline(options: Mapping[str, Any]) -> datetime | None:
    """When the activity must be over, all attempts included, if it has such a limit."""
    if not options.get("schedule_to_close_ms"):
        return None
    scheduled_at = datetime.fromisoformat(options["scheduled_at"])
    return scheduled_at + timedelta(milliseconds=options["schedule_to_close_ms"])


def attempt_deadline(options: Mapping[str, Any], *, leased_at: datetime | None,
                     last_heartbeat: datetime) -> datetime | None:
    """The start-to-close / heartbeat deadline of a running attempt, if it has one."""
    deadlines = []
    if options.get("start_to_close_ms") and leased_at is not None:
        deadlines.append(leased_at + timedelta(milliseconds=options["start_to_close_ms"]))
    if options.get("heartbeat_ms"):
        deadlines.append(last_heartbeat + timedelta(milliseconds=options["heartbeat_ms"]))
    return min(deadlines) if deadlines else None


def attempt_timeout_type(options: Mapping[str, Any], *, leased_at: datetime | None,
                         now: datetime) -> str:
    """Which deadline an attempt whose deadline timer fired passed: start_to_close when its
    time since the lease is up, heartbeat otherwise."""
    if options.get("start_to_close_ms") and leased_at is not None:
        elapsed_ms = (now - leased_at).total_seconds() * 1000
        if elapsed_ms >= options["start_to_close_ms"]:
            return "start_to_close"
    return "heartbeat"


def timeout_failure(timeout_type: str) -> dict[str, Any]:
    """The failure an attempt (or an activity) that ran out of time fails with."""
    if timeout_type in ("schedule_to_start", "schedule_to_close"):
        return {"type": "TimeoutError", "message": f"activity {timeout_type} timeout",
                "non_retryable": True}
    return {"type": "TimeoutError", "message": f"activity {timeout_type} timeout",
            "details": {"timeout_type": timeout_type}}
