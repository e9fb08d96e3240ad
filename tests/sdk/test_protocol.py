"""The wire contract round-trips: what the SDK builds, the engine parses back unchanged, and
every frame decodes to the message it was encoded from."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdk
from sdk import protocol
from sdk._errors import failure_from_exception
from sdk._runtime import WorkflowInstance
from sdk._workflow import WorkflowContext, WorkflowDefinition
from sdk.protocol import limits
from sdk.protocol.names import name_problem
from workflows.core import commands as c

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"],
                             exclude_characters="\x00"), max_size=20)
# What may name something (sdk.protocol.names): no control characters, no whitespace at
# either end, not "." or "..".
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1,
                max_size=limits.MAX_NAME_LENGTH).filter(lambda v: name_problem(v) is None)
short_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
                      min_size=1, max_size=12).filter(lambda v: name_problem(v) is None)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
seqs = st.integers(limits.MIN_SEQ, limits.MAX_SEQ)
seconds = st.floats(0.001, 10 * 365 * 24 * 3600.0)


@st.composite
def sdk_retry_policies(draw: Any) -> sdk.RetryPolicy:
    initial = draw(seconds)
    return sdk.RetryPolicy(
        initial_interval=initial,
        backoff_coefficient=draw(st.floats(limits.MIN_BACKOFF_COEFFICIENT,
                                           limits.MAX_BACKOFF_COEFFICIENT)),
        maximum_interval=draw(st.none() | st.floats(initial, initial * 10)),
        maximum_attempts=draw(st.integers(0, 1000)),
        non_retryable_error_types=draw(st.lists(names, max_size=3)),
    )


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


exceptions = st.one_of(
    st.builds(ValueError, text),
    st.builds(lambda m, t, nr, d: sdk.ApplicationError(m, type=t, non_retryable=nr, details=d),
              text, st.none() | names, st.booleans(), json_values),
).map(_raised)

# Every command as the SDK builds it: an activity from the options ``start_activity`` takes
# (its retry policy converted from ``sdk.RetryPolicy``, or none), timers from ``sleep``,
# markers from ``side_effect``, cancels of handles and timers, and the closing commands.
sdk_commands = st.one_of(
    st.builds(
        lambda seq, name, input, queue, policy, ms: protocol.ScheduleActivity(
            seq=seq, activity_type=name, input=input, task_queue=queue,
            retry_policy=protocol.DEFAULT_RETRY_POLICY if policy is None else policy.to_wire(),
            schedule_to_close_ms=ms[0], schedule_to_start_ms=ms[1], start_to_close_ms=ms[2],
            heartbeat_ms=ms[3]),
        seqs, names, json_values, st.none() | names, st.none() | sdk_retry_policies(),
        st.tuples(*[st.none() | st.integers(1, limits.MAX_DURATION_MS)] * 4),
    ),
    st.builds(protocol.RequestCancelActivity, seq=seqs),
    st.builds(protocol.StartTimer, seq=seqs, duration_ms=st.integers(0, limits.MAX_DURATION_MS)),
    st.builds(protocol.CancelTimer, seq=seqs),
    st.builds(protocol.RecordMarker, seq=seqs, marker_name=st.just("side_effect"),
              data=json_values),
    st.builds(protocol.CompleteWorkflow, result=json_values),
    st.builds(protocol.FailWorkflow, failure=exceptions.map(failure_from_exception)),
    st.builds(protocol.CancelWorkflow, details=st.none()),
)


@given(sdk_commands)
@settings(max_examples=300)
def test_every_command_the_sdk_builds_round_trips_through_the_engines_parser(
    cmd: protocol.Command,
) -> None:
    wire = json.loads(json.dumps(protocol.encode_command(cmd)))
    assert c.parse_command(wire) == cmd
    assert protocol.encode_command(c.parse_command(wire)) == protocol.encode_command(cmd)


def test_an_activity_without_a_retry_policy_sends_null_and_an_explicit_one_in_full() -> None:
    default = protocol.ScheduleActivity(seq=1, activity_type="a")
    assert protocol.encode_command(default)["retry_policy"] is None
    parsed = c.parse_command(protocol.encode_command(default))
    assert isinstance(parsed, c.ScheduleActivity) and parsed.retry_policy == c.RetryPolicy()
    explicit = dataclasses.replace(default, retry_policy=sdk.RetryPolicy().to_wire())
    assert protocol.encode_command(explicit)["retry_policy"] == c.RetryPolicy().to_dict()
    assert protocol.encode_command(default) == {
        "kind": "schedule_activity", "seq": 1, "activity_type": "a", "input": None,
        "task_queue": None, "retry_policy": None, "schedule_to_close_ms": None,
        "schedule_to_start_ms": None, "start_to_close_ms": None, "heartbeat_ms": None}


# ---- through the runtime: what a workflow's calls put on the wire ------------------------

steps = st.lists(st.one_of(
    st.tuples(st.just("activity"), short_names, json_values, st.none() | short_names,
              st.none() | sdk_retry_policies(), st.none() | seconds, st.booleans()),
    st.tuples(st.just("sleep"), st.floats(-1.0, 10 * 365 * 24 * 3600.0)),
    st.tuples(st.just("side_effect"), json_values),
), max_size=8)
endings = st.sampled_from(["return", "raise", "wait"])


def _script(plan: list[tuple[Any, ...]], ending: str, result: Any) -> WorkflowDefinition:
    async def scripted(ctx: WorkflowContext, _: Any) -> Any:
        handles = []
        for step in plan:
            if step[0] == "activity":
                _, name, input, queue, policy, timeout, cancel = step
                handle = ctx.start_activity(name, input, task_queue=queue, retry_policy=policy,
                                            start_to_close_timeout=timeout)
                if cancel:
                    handle.cancel()
                else:
                    handles.append(handle)
            elif step[0] == "sleep":
                asyncio.get_running_loop().create_task(ctx.sleep(step[1]))
            else:
                value = step[1]
                await ctx.side_effect(lambda: value)  # noqa: B023 (awaited at once)
        if ending == "raise":
            raise sdk.ApplicationError("no", type="Refused", details=result)
        if ending == "wait":
            await asyncio.get_running_loop().create_future()
        return result

    return WorkflowDefinition("scripted", scripted)


def _first_task(input: Any) -> list[protocol.WireEvent]:
    now = "2024-01-01T00:00:00+00:00"
    return [
        {"event_id": 1, "event_type": "WorkflowExecutionStarted", "timestamp": now,
         "attributes": {"workflow_type": "scripted", "task_queue": "q", "input": input,
                        "execution_timeout_ms": None, "parent": None,
                        "continued_from_run_id": None}},
        {"event_id": 2, "event_type": "WorkflowTaskScheduled", "timestamp": now,
         "attributes": {"task_queue": "q", "attempt": 1}},
        {"event_id": 3, "event_type": "WorkflowTaskStarted", "timestamp": now,
         "attributes": {"scheduled_event_id": 2, "attempt": 1, "worker": "w"}},
    ]


@given(steps, endings, json_values)
@settings(max_examples=150, deadline=None)
def test_what_a_workflow_sends_parses_and_encodes_back_to_the_same_json(
    plan: list[tuple[Any, ...]], ending: str, result: Any,
) -> None:
    instance = WorkflowInstance(_script(plan, ending, result), workflow_id="wf", run_id="r",
                                workflow_type="scripted", task_queue="q")
    outcome = instance.activate(_first_task(None))
    assert outcome.failure is None and outcome.commands is not None
    sent = json.loads(json.dumps(outcome.commands))
    parsed = c.parse_commands(sent)
    assert protocol.encode_commands(parsed) == sent


# ---- frames ------------------------------------------------------------------------------


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _values(annotation: str, name: str) -> st.SearchStrategy[Any]:
    base = annotation.removesuffix(" | None")
    if name == "id":
        strategy: st.SearchStrategy[Any] = st.text(max_size=limits.MAX_REQUEST_ID_LENGTH)
    elif name == "task_queue":
        strategy = names
    else:
        strategy = {
            "str": text, "int": st.integers(0, limits.MAX_COUNT),
            "float": st.floats(0, 1e9), "bool": st.booleans(),
            "list[str]": st.lists(names, max_size=3),
            "list[WireCommand]": st.lists(st.dictionaries(text, json_values, max_size=3),
                                          max_size=3),
            "list[WireEvent]": st.lists(st.dictionaries(text, json_values, max_size=3),
                                        max_size=3),
            "JSONObject": st.dictionaries(text, json_values, max_size=3),
            "WireFailure": st.dictionaries(text, json_values, max_size=3),
            "JSONValue": json_values,
            "list[JSONValue]": st.lists(json_values, max_size=3),
        }[base]
    return strategy | st.none() if base != annotation else strategy


def _frames(registry: dict[str, type[protocol.Message]]) -> st.SearchStrategy[protocol.Message]:
    return st.one_of(*[
        st.builds(cls, **{f.name: _values(str(f.type), f.name) for f in dataclasses.fields(cls)})
        for cls in registry.values()
    ])


@given(_frames(protocol.WORKER_MESSAGES))
@settings(max_examples=300)
def test_worker_frames_round_trip_through_decode(message: protocol.Message) -> None:
    assert protocol.decode_worker_message(message.encode()) == message


@given(_frames(protocol.ENGINE_MESSAGES))
@settings(max_examples=300)
def test_engine_frames_round_trip_through_decode(message: protocol.Message) -> None:
    assert protocol.decode_engine_message(message.encode()) == message


@pytest.mark.parametrize("payload", ["a\x00b", {"k\x00": 1}, ["\ud800"], float("nan"),
                                     _deep(protocol.MAX_JSON_DEPTH + 1)])
def test_a_payload_no_database_can_store_is_named(payload: Any) -> None:
    message = protocol.ActivityTaskCompleted(token="1.x", result={"ok": [payload]})
    decoded = protocol.decode_worker_message(message.encode())
    problem = protocol.payload_problem_of(decoded)
    assert problem is not None and problem.startswith("activity_task_completed: 'result': ")


def test_payloads_of_any_number_pass() -> None:
    message = protocol.ActivityTaskCompleted(token="1.x", result=[2**64, 10**40, 1e20, -2**70])
    assert protocol.payload_problem_of(protocol.decode_worker_message(message.encode())) is None


def test_a_frame_nested_too_deep_to_decode_is_malformed_not_a_recursion_error() -> None:
    frame = '{"type":"ping","x":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_worker_message(frame)
    assert caught.value.code == "malformed_json"
    assert "nested too deeply" in caught.value.message


@pytest.mark.parametrize("value", ["a\x00", "\udc00"])
def test_a_string_field_no_database_can_store_is_refused(value: str) -> None:
    frame = json.dumps({"type": "workflow_task_failed", "token": "1.x", "cause": value,
                        "failure": {}, "id": "f"})
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_worker_message(frame)
    assert (caught.value.code, caught.value.request_id) == ("invalid_message", "f")


def test_a_frame_field_left_out_takes_its_default() -> None:
    assert protocol.decode_worker_message('{"type":"hello","task_queue":"q"}') == protocol.Hello(
        task_queue="q")


def test_the_protocol_and_the_core_load_no_worker_or_engine_dependencies() -> None:
    code = ("import sys, sdk.protocol, workflows.core.commands, workflows.core.events; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'httpx', 'websockets', 'opentelemetry', 'django'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
