"""A child started with a retry policy, in the pure core: a failed run is retried (a new
run of the same workflow id, its first workflow task after the policy's back-off), unless
the failure is non-retryable or it was the last attempt."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sdk.protocol.commands import encode_command
from workflows.core import commands as c
from workflows.core import decide
from workflows.core import effects as fx
from workflows.core.events import EventType
from workflows.core.state import ExecutionState, fold

from .strategies import T0

E = EventType

POLICY = c.RetryPolicy(initial_interval_ms=1000, backoff_coefficient=2.0,
                       maximum_attempts=3, non_retryable_error_types=("Fatal",))


def child_run(attempt: int = 1, backoff_ms: int | None = None) -> decide.Transition:
    return decide.start(workflow_type="Kid", task_queue="q", input={"n": 1}, now=T0,
                        parent={"workflow_id": "p", "run_id": "pr"}, retry_policy=POLICY,
                        attempt=attempt, first_workflow_task_backoff_ms=backoff_ms)


def fail(t: decide.Transition, failure: dict[str, Any]) -> decide.Transition:
    t.extend(decide.start_workflow_task(t.state, scheduled_event_id=2, worker="w", now=T0))
    started = t.events[0].attributes
    return decide.complete_workflow_task(
        t.state, scheduled_event_id=2, worker="w", now=T0, successor_run_id="r2",
        commands=[c.FailWorkflow(failure=c.normalize_failure(failure))], started=started)


def test_a_failed_run_with_a_policy_is_retried_after_the_back_off() -> None:
    step = fail(child_run(attempt=2), {"type": "RuntimeError", "message": "boom"})
    failed = step.events[-1]
    assert failed.event_type is E.WORKFLOW_EXECUTION_FAILED
    assert failed.attributes["new_execution_run_id"] == "r2"
    successor = [e for e in step.effects if isinstance(e, fx.StartSuccessor)]
    assert successor == [fx.StartSuccessor("r2", "Kid", "q", {"n": 1}, None,
                                           retry_policy=POLICY.to_dict(), attempt=3,
                                           first_workflow_task_backoff_ms=2000)]
    assert any(isinstance(e, fx.CloseRun) for e in step.effects)


def test_a_retried_run_waits_out_its_back_off_before_its_first_workflow_task() -> None:
    t = child_run(attempt=2, backoff_ms=1000)
    assert [e.event_type for e in t.events] == [E.WORKFLOW_EXECUTION_STARTED]
    assert t.events[0].attributes["attempt"] == 2
    assert t.state.workflow_task is None and t.state.workflow_task_needed
    assert t.effects == [fx.StartTimer(fx.TimerKind.WORKFLOW_TASK_RETRY,
                                       T0 + timedelta(milliseconds=1000))]
    assert ExecutionState.from_dict(t.state.to_dict()) == t.state == fold(t.events)
    fired = decide.retry_workflow_task(t.state, now=T0 + timedelta(seconds=1))
    assert [e.event_type for e in fired.events] == [E.WORKFLOW_TASK_SCHEDULED]


def test_a_non_retryable_failure_fails_the_child_for_good() -> None:
    for failure in ({"type": "Fatal", "message": "no"},
                    {"type": "RuntimeError", "message": "no", "non_retryable": True}):
        step = fail(child_run(), failure)
        assert "new_execution_run_id" not in step.events[-1].attributes
        assert not any(isinstance(e, fx.StartSuccessor) for e in step.effects)


def test_the_last_attempt_fails_the_child_for_good() -> None:
    step = fail(child_run(attempt=3), {"type": "RuntimeError", "message": "boom"})
    assert step.events[-1].event_type is E.WORKFLOW_EXECUTION_FAILED
    assert "new_execution_run_id" not in step.events[-1].attributes
    assert not any(isinstance(e, fx.StartSuccessor) for e in step.effects)


def test_a_run_without_a_policy_is_not_retried_and_records_no_retry_attributes() -> None:
    t = decide.start(workflow_type="Kid", task_queue="q", input=None, now=T0)
    assert set(t.events[0].attributes) == {"workflow_type", "task_queue", "input",
                                           "execution_timeout_ms", "parent",
                                           "continued_from_run_id"}
    assert decide.retry_delay(t.events[0].attributes, {"type": "X"}, now=T0) is None


def test_start_child_workflow_carries_its_policy_on_the_wire_and_into_the_child() -> None:
    cmd = c.StartChildWorkflow(seq=1, workflow_type="Kid", workflow_id="kid",
                               retry_policy=POLICY)
    raw = encode_command(cmd)
    assert raw["retry_policy"] == POLICY.to_dict()
    assert c.parse_command(raw) == cmd
    plain = c.StartChildWorkflow(seq=1, workflow_type="Kid", workflow_id="kid")
    parsed = c.parse_command(encode_command(plain))
    assert isinstance(parsed, c.StartChildWorkflow) and parsed.retry_policy is None
    t = decide.start(workflow_type="Parent", task_queue="q", input=None, now=T0)
    t.extend(decide.start_workflow_task(t.state, scheduled_event_id=2, worker="w", now=T0))
    step = decide.complete_workflow_task(t.state, scheduled_event_id=2, worker="w", now=T0,
                                         commands=[cmd], child_run_ids={1: "r1"})
    initiated = step.events[1]
    assert initiated.attributes["retry_policy"] == POLICY.to_dict()
    [start] = [e for e in step.effects if isinstance(e, fx.StartChild)]
    assert start.retry_policy == POLICY.to_dict()


def test_a_run_that_times_out_is_retried_like_a_failed_one() -> None:
    t = decide.start(workflow_type="Kid", task_queue="q", input=1, now=T0,
                     execution_timeout_ms=5000, retry_policy=POLICY)
    started = t.events[0].attributes
    step = decide.time_out_workflow(t.state, now=T0, started=started, successor_run_id="r2")
    assert step.events[-1].event_type is E.WORKFLOW_EXECUTION_TIMED_OUT
    assert step.events[-1].attributes == {"new_execution_run_id": "r2"}
    assert [e for e in step.effects if isinstance(e, fx.StartSuccessor)] == [
        fx.StartSuccessor("r2", "Kid", "q", 1, 5000, retry_policy=POLICY.to_dict(), attempt=2,
                          first_workflow_task_backoff_ms=1000)]
    last = decide.start(workflow_type="Kid", task_queue="q", input=1, now=T0,
                        execution_timeout_ms=5000, retry_policy=POLICY, attempt=3)
    final = decide.time_out_workflow(last.state, now=T0, started=last.events[0].attributes,
                                     successor_run_id="r4")
    assert final.events[-1].attributes == {}
    assert not any(isinstance(e, fx.StartSuccessor) for e in final.effects)
