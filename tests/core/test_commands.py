"""Parsing and validating the commands a workflow task completes with."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.protocol import encode_command
from workflows.core import commands as c

from .strategies import any_command

VALID: list[tuple[dict[str, Any], type]] = [
    ({"kind": "schedule_activity", "seq": 1, "activity_type": "charge"}, c.ScheduleActivity),
    ({"kind": "schedule_activity", "seq": 2, "activity_type": "charge", "input": {"n": 1},
      "task_queue": "payments", "retry_policy": {"maximum_attempts": 3},
      "schedule_to_close_ms": 60_000, "schedule_to_start_ms": 5_000,
      "start_to_close_ms": 10_000, "heartbeat_ms": 1_000}, c.ScheduleActivity),
    ({"kind": "request_cancel_activity", "seq": 1}, c.RequestCancelActivity),
    ({"kind": "start_timer", "seq": 3, "duration_ms": 0}, c.StartTimer),
    ({"kind": "start_timer", "seq": 3, "duration_ms": c.MAX_DURATION_MS}, c.StartTimer),
    ({"kind": "cancel_timer", "seq": 3}, c.CancelTimer),
    ({"kind": "record_marker", "seq": 4, "marker_name": "uuid", "data": "abc"}, c.RecordMarker),
    ({"kind": "complete_workflow", "result": [1, 2]}, c.CompleteWorkflow),
    ({"kind": "complete_workflow"}, c.CompleteWorkflow),
    ({"kind": "fail_workflow", "failure": {"type": "Boom", "message": "no"}}, c.FailWorkflow),
    ({"kind": "cancel_workflow", "details": "bye"}, c.CancelWorkflow),
    ({"kind": "continue_as_new", "input": {"page": 2}}, c.ContinueAsNew),
    ({"kind": "continue_as_new", "workflow_type": "Other", "task_queue": "q2"}, c.ContinueAsNew),
]


@pytest.mark.parametrize(("raw", "cls"), VALID, ids=[f"{r['kind']}-{i}" for i, (r, _) in
                                                      enumerate(VALID)])
def test_parse_command_accepts_every_documented_kind(raw: dict[str, Any], cls: type) -> None:
    cmd = c.parse_command(raw)
    assert isinstance(cmd, cls)
    assert cmd.kind == raw["kind"]
    for key, value in raw.items():
        if key not in ("kind", "retry_policy", "failure"):
            assert getattr(cmd, key) == value


def test_parse_schedule_activity_keeps_every_option() -> None:
    cmd = c.parse_command(VALID[1][0])
    assert isinstance(cmd, c.ScheduleActivity)
    assert cmd.retry_policy == c.RetryPolicy(maximum_attempts=3)
    assert (cmd.schedule_to_close_ms, cmd.schedule_to_start_ms, cmd.start_to_close_ms,
            cmd.heartbeat_ms) == (60_000, 5_000, 10_000, 1_000)
    default = c.parse_command(VALID[0][0])
    assert isinstance(default, c.ScheduleActivity)
    assert default.retry_policy == c.RetryPolicy()
    assert default.task_queue is None and default.input is None


def test_fail_workflow_failure_is_normalized() -> None:
    cmd = c.parse_command({"kind": "fail_workflow",
                           "failure": {"message": "x" * 40_000, "stack": None, "extra": 1}})
    assert isinstance(cmd, c.FailWorkflow)
    assert cmd.failure == {"type": "Error", "message": "x" * 32_768, "stack": "",
                           "details": None, "non_retryable": False}


TOO_LONG = "n" * (c.MAX_NAME_LENGTH + 1)
INVALID: list[Any] = [
    None, 1, "schedule_activity", [{"kind": "complete_workflow"}],
    {}, {"kind": None}, {"kind": 1}, {"kind": "launch_missiles"}, {"kind": "Complete_Workflow"},
    # seq
    {"kind": "start_timer", "duration_ms": 1},
    {"kind": "start_timer", "seq": 0, "duration_ms": 1},
    {"kind": "start_timer", "seq": -1, "duration_ms": 1},
    {"kind": "start_timer", "seq": 2**31, "duration_ms": 1},
    {"kind": "start_timer", "seq": True, "duration_ms": 1},
    {"kind": "start_timer", "seq": 1.0, "duration_ms": 1},
    {"kind": "start_timer", "seq": "1", "duration_ms": 1},
    {"kind": "cancel_timer"},
    {"kind": "request_cancel_activity", "seq": False},
    # durations
    {"kind": "start_timer", "seq": 1},
    {"kind": "start_timer", "seq": 1, "duration_ms": -1},
    {"kind": "start_timer", "seq": 1, "duration_ms": c.MAX_DURATION_MS + 1},
    {"kind": "start_timer", "seq": 1, "duration_ms": 10**30},
    {"kind": "start_timer", "seq": 1, "duration_ms": 1.5},
    {"kind": "start_timer", "seq": 1, "duration_ms": True},
    {"kind": "start_timer", "seq": 1, "duration_ms": "10"},
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a", "start_to_close_ms": 0},
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a", "heartbeat_ms": -5},
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a", "schedule_to_close_ms": True},
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a",
     "schedule_to_start_ms": c.MAX_DURATION_MS + 1},
    # names
    {"kind": "schedule_activity", "seq": 1},
    {"kind": "schedule_activity", "seq": 1, "activity_type": ""},
    {"kind": "schedule_activity", "seq": 1, "activity_type": 7},
    {"kind": "schedule_activity", "seq": 1, "activity_type": TOO_LONG},
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a", "task_queue": ""},
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a", "task_queue": TOO_LONG},
    {"kind": "record_marker", "seq": 1},
    {"kind": "record_marker", "seq": 1, "marker_name": TOO_LONG},
    {"kind": "continue_as_new", "workflow_type": TOO_LONG},
    {"kind": "continue_as_new", "task_queue": 3},
    # retry policy
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a", "retry_policy": []},
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a",
     "retry_policy": {"maximum_attempts": -1}},
    # failures
    {"kind": "fail_workflow"},
    {"kind": "fail_workflow", "failure": "boom"},
    {"kind": "fail_workflow", "failure": ["boom"]},
]


@pytest.mark.parametrize("raw", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_parse_command_rejects_malformed(raw: Any) -> None:
    with pytest.raises(c.InvalidCommand):
        c.parse_command(raw)


def test_name_at_the_limit_is_accepted() -> None:
    name = "n" * c.MAX_NAME_LENGTH
    cmd = c.parse_command({"kind": "schedule_activity", "seq": 2**31 - 1, "activity_type": name})
    assert isinstance(cmd, c.ScheduleActivity)
    assert cmd.activity_type == name


def test_parse_commands_needs_a_list_and_rejects_any_bad_item() -> None:
    assert c.parse_commands([]) == []
    with pytest.raises(c.InvalidCommand):
        c.parse_commands({"kind": "complete_workflow"})
    with pytest.raises(c.InvalidCommand):
        c.parse_commands([{"kind": "complete_workflow"}, {"kind": "nope"}])


@given(any_command())
@settings(max_examples=150)
def test_wire_form_round_trips(cmd: c.Command) -> None:
    assert c.parse_command(encode_command(cmd)) == cmd


@given(st.dictionaries(st.text(max_size=20), st.none() | st.integers() | st.text(max_size=5),
                       max_size=5))
@settings(max_examples=100)
def test_parse_command_raises_only_invalid_command(raw: dict[str, Any]) -> None:
    for kind in (None, "schedule_activity", "start_timer", "record_marker", "fail_workflow"):
        try:
            c.parse_command({**raw, "kind": kind} if kind else raw)
        except c.InvalidCommand:
            pass


# ---- retry policies ------------------------------------------------------------------------


def test_retry_policy_defaults() -> None:
    assert c.RetryPolicy.from_dict(None) == c.RetryPolicy()
    assert c.RetryPolicy.from_dict({}) == c.RetryPolicy(1000, 2.0, None, 0, ())


def test_retry_policy_from_dict_round_trips() -> None:
    policy = c.RetryPolicy(500, 1.5, 10_000, 7, ("ValueError", "KeyError"))
    assert c.RetryPolicy.from_dict(policy.to_dict()) == policy
    assert c.RetryPolicy.from_dict({"backoff_coefficient": 3}).backoff_coefficient == 3.0


@pytest.mark.parametrize("raw", [
    "fast", [1], 3,
    {"initial_interval_ms": 0}, {"initial_interval_ms": -1}, {"initial_interval_ms": 1.5},
    {"initial_interval_ms": True}, {"initial_interval_ms": None},
    {"backoff_coefficient": 0.5}, {"backoff_coefficient": 101}, {"backoff_coefficient": True},
    {"backoff_coefficient": "2"}, {"backoff_coefficient": float("nan")},
    {"backoff_coefficient": float("inf")},
    {"initial_interval_ms": 1000, "maximum_interval_ms": 999},
    {"maximum_interval_ms": "x"},
    {"maximum_attempts": -1}, {"maximum_attempts": 2.0}, {"maximum_attempts": False},
    {"non_retryable_error_types": "ValueError"}, {"non_retryable_error_types": [1]},
    {"non_retryable_error_types": None},
])
def test_retry_policy_from_dict_rejects(raw: Any) -> None:
    with pytest.raises(c.InvalidCommand):
        c.RetryPolicy.from_dict(raw)


def test_backoff_doubles_and_caps_at_100x_initial() -> None:
    policy = c.RetryPolicy()
    assert [policy.backoff_ms(n) for n in range(1, 10)] == [
        1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 100_000, 100_000]


def test_backoff_caps_at_maximum_interval() -> None:
    policy = c.RetryPolicy(initial_interval_ms=100, backoff_coefficient=3.0,
                           maximum_interval_ms=1000)
    assert [policy.backoff_ms(n) for n in range(1, 6)] == [100, 300, 900, 1000, 1000]
    flat = c.RetryPolicy(initial_interval_ms=250, backoff_coefficient=1.0)
    assert {flat.backoff_ms(n) for n in range(1, 50)} == {250}


@given(st.integers(1, 10_000), st.floats(1.0, 100.0), st.integers(1, 5_000))
@settings(max_examples=200)
def test_backoff_is_monotone_and_bounded(initial: int, coefficient: float, attempt: int) -> None:
    policy = c.RetryPolicy(initial_interval_ms=initial, backoff_coefficient=coefficient)
    assert initial <= policy.backoff_ms(attempt) <= initial * 100
    assert policy.backoff_ms(attempt) <= policy.backoff_ms(attempt + 1)


# Activities with unlimited attempts retry for days: the power must never overflow.
@pytest.mark.parametrize(("coefficient", "attempt"), [(2.0, 1100), (100.0, 200), (1.5, 10**6)])
def test_backoff_does_not_overflow_on_long_retrying_activities(coefficient: float,
                                                               attempt: int) -> None:
    policy = c.RetryPolicy(backoff_coefficient=coefficient)
    assert policy.backoff_ms(attempt) == 100_000
