"""``RetryPolicy``: how an activity is retried, in the units users think in (seconds).

The wire carries the policy in milliseconds (``sdk.protocol.RetryPolicy``, which the engine
parses); this class validates what users write against the same limits the engine enforces,
so a bad policy fails in the workflow code that wrote it instead of as a rejected workflow
task, and ``to_wire`` converts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sdk import protocol
from sdk.protocol.limits import MAX_BACKOFF_COEFFICIENT, MAX_DURATION_MS, MIN_BACKOFF_COEFFICIENT
from sdk.protocol.payloads import JSONObject

__all__ = ["RetryPolicy", "to_ms"]


def to_ms(value: float | timedelta, what: str, *, minimum: int = 1) -> int:
    """Seconds (or a timedelta) as whole milliseconds, at least ``minimum``.

    A positive duration shorter than a millisecond rounds up to ``minimum``; zero or a negative
    value is an error when ``minimum`` is 1.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be seconds (a number) or a timedelta, not {value!r}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"{what} must be finite, not {value!r}")
    if minimum >= 1 and seconds <= 0:
        raise ValueError(f"{what} must be positive, not {value!r}")
    ms = max(minimum, round(seconds * 1000))
    if ms > MAX_DURATION_MS:
        raise ValueError(f"{what} is longer than a century")
    return ms


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed activity is tried again.

    Intervals are seconds or timedeltas. ``maximum_attempts=0`` means unlimited;
    ``maximum_interval=None`` caps the back-off at 100 x ``initial_interval``.
    """

    initial_interval: float | timedelta = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float | timedelta | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: Sequence[str] = field(default=())

    def __post_init__(self) -> None:
        initial = to_ms(self.initial_interval, "initial_interval")
        coefficient = self.backoff_coefficient
        if isinstance(coefficient, bool) or not isinstance(coefficient, int | float):
            raise TypeError("backoff_coefficient must be a number")
        if not MIN_BACKOFF_COEFFICIENT <= float(coefficient) <= MAX_BACKOFF_COEFFICIENT:
            raise ValueError(f"backoff_coefficient must be between {MIN_BACKOFF_COEFFICIENT:g} "
                             f"and {MAX_BACKOFF_COEFFICIENT:g}")
        if self.maximum_interval is not None:
            maximum = to_ms(self.maximum_interval, "maximum_interval")
            if maximum < initial:
                raise ValueError("maximum_interval must not be shorter than initial_interval")
        attempts = self.maximum_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise ValueError("maximum_attempts must be an integer >= 0 (0 = unlimited)")
        types = self.non_retryable_error_types
        if isinstance(types, str) or not all(isinstance(t, str) and t for t in types):
            raise TypeError("non_retryable_error_types must be a sequence of type names")
        object.__setattr__(self, "non_retryable_error_types", tuple(types))

    def to_wire(self) -> protocol.RetryPolicy:
        """The policy in the protocol's form (milliseconds), as a command carries it."""
        return protocol.RetryPolicy(
            initial_interval_ms=to_ms(self.initial_interval, "initial_interval"),
            backoff_coefficient=float(self.backoff_coefficient),
            maximum_interval_ms=None if self.maximum_interval is None
            else to_ms(self.maximum_interval, "maximum_interval"),
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=tuple(self.non_retryable_error_types),
        )

    def to_dict(self) -> JSONObject:
        """The wire form the engine parses (``sdk.protocol.RetryPolicy.from_dict``)."""
        return self.to_wire().to_dict()
