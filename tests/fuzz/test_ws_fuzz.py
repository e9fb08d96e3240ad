"""Hostile frames on the worker websocket (hypothesis): random bytes, malformed JSON, wrong
types, oversized frames, unknown message types, replayed and forged task tokens, completions
of another worker's lease, payloads no database can store (NUL, lone surrogates, NaN, nesting
past ``MAX_JSON_DEPTH`` and far past what ``json`` can decode), numbers of any size, and
floods. Every frame gets an answer, the socket stays open, the
engine keeps serving the honest worker beside it, and nothing is written.

``FUZZ_EXAMPLES`` (default 60) sets how many hypothesis examples run; each sends up to
``MAX_FRAMES`` frames on a fresh connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch import notify
from dispatch import services as dispatch
from dispatch.leader import _new_term
from dispatch.models import Task
from schedproject.asgi import application
from timers.models import Timer
from workflows.models import ApiToken, Execution, HistoryEvent, TokenScope
from workflows.services import workflow_start

from ..chaos import figures

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 60)
MAX_FRAMES = 12
LIMIT = 4096  # SCHED_MAX_PAYLOAD_BYTES for these tests
WORKFLOW = "fuzzed"
TYPES = ["hello", "credit", "workflow_task_completed", "workflow_task_failed",
         "activity_task_completed", "activity_task_failed", "activity_heartbeat",
         "history_request", "ping"]
REPLIES = {"error", "ack", "pong", "history"}
tried = {"frames": 0, "examples": 0}

hostile_text = st.text(st.sampled_from(["\x00", "\ud800", "\udfff", "a", "\u00e9"]),
                       max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(2**63, 2**200)
    | st.integers(-2**200, -2**63) | st.floats() | st.text(max_size=20) | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)


VICTIM = "@victim"  # stands for the honest worker's live task token in a drawn frame
FORGED = "@forged"  # the same task id with another secret part


def frame_strategy() -> st.SearchStrategy[str | bytes]:
    tokens = st.sampled_from([VICTIM, VICTIM + "x", FORGED, "1.abc", ""]) | st.text(max_size=70)
    fields = st.dictionaries(
        st.sampled_from(["id", "token", "commands", "result", "failure", "cause", "canceled",
                         "details", "max_workflow_tasks", "max_activity_tasks", "task_queue",
                         "workflow_types", "activity_types", "x"]),
        json_values | tokens, max_size=6)
    messages = st.builds(lambda t, f: {**f, "type": t},
                         st.sampled_from(TYPES) | st.text(max_size=12), fields)
    completions = st.builds(
        lambda kind, token, extra: {"type": kind, "token": token, "id": "c", **extra},
        st.sampled_from(TYPES[2:8]), tokens,
        st.fixed_dictionaries({}, optional={
            "commands": st.lists(st.fixed_dictionaries(
                {"kind": st.sampled_from(["complete_workflow", "schedule_activity",
                                          "start_timer", "fail_workflow", "bogus"])},
                optional={"seq": json_values, "result": json_values,
                          "duration_ms": json_values, "activity_type": json_values}),
                max_size=3),
            "result": json_values, "failure": json_values, "cause": json_values}))
    return st.one_of(
        st.binary(min_size=1, max_size=300),
        st.text(min_size=1, max_size=300),
        st.builds(lambda s: "{" + s, st.text(max_size=100)),
        json_values.map(json.dumps),
        messages.map(json.dumps),
        completions.map(json.dumps),
        st.integers(LIMIT + 1, LIMIT * 3).map(lambda n: '{"type":"ping","p":"' + "x" * n + '"}'),
        st.builds(_nested, st.sampled_from(TYPES),
                  st.integers(60, 100) | st.sampled_from([1500, 100_000])),
    )


def _nested(kind: str, depth: int) -> str:
    """A frame whose payload nests ``depth`` arrays (100,000: past what ``json`` decodes)."""
    return (f'{{"type":"{kind}","id":"n","token":"{VICTIM}","result":' + "[" * depth
            + "]" * depth + "}")


async def connect(raw: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, "/ws/worker/",
                                 headers=[(b"authorization", f"Bearer {raw}".encode())])
    connected, _ = await comm.connect(timeout=10)
    assert connected
    return comm


async def hello(comm: WebsocketCommunicator, queue: str) -> dict[str, Any]:
    await comm.send_json_to({"type": "hello", "task_queue": queue, "workflow_types": [WORKFLOW],
                             "activity_types": ["act"], "max_workflow_tasks": 5,
                             "max_activity_tasks": 5, "identity": "fuzz"})
    welcome: dict[str, Any] = await comm.receive_json_from(timeout=10)
    assert welcome["type"] == "welcome", welcome
    return welcome


def _snapshot() -> tuple[Any, ...]:
    return (HistoryEvent.objects.count(),
            sorted(Execution.objects.values_list("id", "status", "next_event_id", "state")),
            sorted(Task.objects.values_list("id", "state", "token", "attempt", "lease_owner")),
            Timer.objects.count())


snapshot = database_sync_to_async(_snapshot)


def _lease_a_task(queue: str) -> list[tuple[str, dict[str, Any]]]:
    workflow_start(workflow_type=WORKFLOW, task_queue=queue)
    return dispatch.dispatch_tick(now=timezone.now(), term=_new_term("dispatcher"))


async def honest_worker(raw: str) -> tuple[WebsocketCommunicator, str]:
    """A worker holding a leased workflow task: the fuzzer's victim."""
    queue = "honest-" + uuid.uuid4().hex
    comm = await connect(raw)
    await hello(comm, queue)
    deliveries = await database_sync_to_async(_lease_a_task)(queue)
    await notify.deliver(deliveries)
    task = await comm.receive_json_from(timeout=10)
    assert task["type"] == "workflow_task", task
    return comm, task["token"]


async def complete(comm: WebsocketCommunicator, token: str) -> None:
    await comm.send_json_to({"type": "workflow_task_completed", "id": "done", "token": token,
                             "commands": [{"kind": "complete_workflow", "result": "ok"}]})
    reply = await comm.receive_json_from(timeout=10)
    assert reply == {"type": "ack", "id": "done"} or (
        reply["type"] == "ack" and reply["id"] == "done"), reply


async def answers_each(comm: WebsocketCommunicator, frames: list[str | bytes]) -> None:
    for frame in frames:
        if isinstance(frame, bytes):
            await comm.send_to(bytes_data=frame)
        else:
            await comm.send_to(text_data=frame)
        reply = json.loads(await comm.receive_from(timeout=10))
        assert reply["type"] in REPLIES, reply
        assert reply["type"] != "error" or reply["code"] != "internal_error", (frame, reply)


@pytest.fixture
def tokens(settings: Any) -> tuple[str, str]:
    settings.SCHED = dataclasses.replace(settings.SCHED, max_payload_bytes=LIMIT)
    _, honest = ApiToken.issue("honest", scope=TokenScope.WORKER)
    _, hostile = ApiToken.issue("hostile", scope=TokenScope.WORKER)
    return honest, hostile


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drawn=st.lists(frame_strategy(), min_size=1, max_size=MAX_FRAMES))
def test_hostile_frames_change_nothing(tokens: tuple[str, str],
                                       drawn: list[str | bytes]) -> None:
    honest_raw, hostile_raw = tokens

    async def scenario() -> None:
        honest, victim_token = await honest_worker(honest_raw)
        hostile = await connect(hostile_raw)
        await hello(hostile, "hostile")
        forged = victim_token.split(".")[0] + ".forged"
        frames = [f if isinstance(f, bytes)
                  else f.replace(VICTIM, victim_token).replace(FORGED, forged) for f in drawn]
        before = await snapshot()
        await answers_each(hostile, frames)
        assert await snapshot() == before, "a hostile frame changed the database"
        tried["frames"] += len(frames)
        tried["examples"] += 1
        # The honest worker's lease survived, and it is still served.
        await complete(honest, victim_token)
        await hostile.disconnect()
        await honest.disconnect()

    asyncio.run(scenario())


def test_zz_record_figures() -> None:
    figures.record("fuzz", websocket_examples_total=tried["examples"],
                   websocket_frames_total=tried["frames"])


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer sched_forged", "Basic eA=="])
def test_a_socket_without_a_worker_token_is_closed(tokens: tuple[str, str],
                                                   header: str | None) -> None:
    async def scenario() -> None:
        headers = [(b"authorization", header.encode())] if header else []
        comm = WebsocketCommunicator(application, "/ws/worker/", headers=headers)
        await comm.connect(timeout=10)
        error = await comm.receive_json_from(timeout=10)
        assert error["code"] == "unauthenticated"
        closed = await comm.receive_output(timeout=10)
        assert closed == {"type": "websocket.close", "code": 4401}
    asyncio.run(scenario())


def test_an_api_token_cannot_act_as_a_worker(tokens: tuple[str, str]) -> None:
    _, api = ApiToken.issue("api", scope=TokenScope.API)

    async def scenario() -> None:
        comm = WebsocketCommunicator(application, "/ws/worker/",
                                     headers=[(b"authorization", f"Bearer {api}".encode())])
        await comm.connect(timeout=10)
        assert (await comm.receive_json_from(timeout=10))["code"] == "unauthenticated"
    asyncio.run(scenario())


def test_oversized_frame_is_refused_clearly(tokens: tuple[str, str]) -> None:
    async def scenario() -> None:
        comm = await connect(tokens[1])
        await hello(comm, "hostile")
        await comm.send_to(text_data='{"type":"ping","pad":"' + "x" * (LIMIT * 4) + '"}')
        error = await comm.receive_json_from(timeout=10)
        assert error["code"] == "payload_too_large"
        assert str(LIMIT) in error["message"]
        await comm.send_json_to({"type": "ping", "id": "p"})
        assert (await comm.receive_json_from(timeout=10))["type"] == "pong"
        await comm.disconnect()
    asyncio.run(scenario())


def _workflow_task_failures() -> list[dict[str, Any]]:
    return [e.attributes for e in HistoryEvent.objects.filter(event_type="WorkflowTaskFailed")]


@pytest.mark.parametrize(("result", "code"), [
    ("a\x00b", "invalid_payload"), ({"k": "\ud800"}, "invalid_payload"),
    (float("nan"), "invalid_payload"), ("x" * (LIMIT + 1), "payload_too_large"),
])
def test_a_completion_the_engine_cannot_take_fails_its_own_task(
        tokens: tuple[str, str], result: Any, code: str) -> None:
    """What the SDK would never send: the engine fails that workflow task (retried with its
    back-off), answers why, and the socket goes on."""
    async def scenario() -> dict[str, Any]:
        comm, token = await honest_worker(tokens[0])
        await comm.send_to(text_data=json.dumps(
            {"type": "workflow_task_completed", "id": "c", "token": token,
             "commands": [{"kind": "complete_workflow", "result": result}]}))
        error: dict[str, Any] = await comm.receive_json_from(timeout=10)
        await comm.send_json_to({"type": "ping", "id": "p"})
        assert await comm.receive_json_from(timeout=10) == {"type": "pong", "id": "p"}
        await comm.disconnect()
        return error

    error = asyncio.run(scenario())
    assert (error["type"], error["code"], error["id"]) == ("error", code, "c")
    [failed] = _workflow_task_failures()
    assert failed["cause"] == code
    assert failed["failure"]["type"] == code
    assert failed["failure"]["message"] == error["message"]
    if code == "payload_too_large":
        assert str(LIMIT) in error["message"]


def test_numbers_of_any_size_cross_the_channel_layer(tokens: tuple[str, str]) -> None:
    """msgpack (channels-redis) takes no integer of 2**64 or more: the task frame goes as
    JSON text, so the run and those dispatched beside it are delivered."""
    async def scenario() -> list[dict[str, Any]]:
        queue = "numbers-" + uuid.uuid4().hex
        comm = await connect(tokens[0])
        await hello(comm, queue)

        def start_and_tick() -> list[tuple[str, dict[str, Any]]]:
            for value in (2**64, 1, 10**30, 1e20):
                workflow_start(workflow_type=WORKFLOW, task_queue=queue, input=value)
            return dispatch.dispatch_tick(now=timezone.now(), term=_new_term("dispatcher"))

        await notify.deliver(await database_sync_to_async(start_and_tick)())
        frames = [await comm.receive_json_from(timeout=10) for _ in range(4)]
        await comm.disconnect()
        return frames

    inputs = sorted(f["events"][0]["attributes"]["input"] for f in asyncio.run(scenario()))
    assert inputs == sorted([1, 1e20, 2**64, 10**30])


def test_a_flood_does_not_starve_another_worker(tokens: tuple[str, str]) -> None:
    honest_raw, hostile_raw = tokens
    flood = 1500

    async def scenario() -> float:
        honest, victim_token = await honest_worker(honest_raw)
        hostile = await connect(hostile_raw)
        await hello(hostile, "hostile")
        junk: list[str] = ['{"type":"ping"}', "not json", '{"type":"nope"}',
                           json.dumps({"type": "workflow_task_completed", "token": victim_token,
                                       "commands": []})]
        for i in range(flood):  # queued at once, never read: the engine must not care
            await hostile.send_to(text_data=junk[i % len(junk)])
        loop = asyncio.get_running_loop()
        started = loop.time()
        await complete(honest, victim_token)
        took = loop.time() - started
        await hostile.disconnect()
        await honest.disconnect()
        return took

    took = asyncio.run(scenario())
    figures.record("fuzz", flood_frames=flood, honest_completion_during_flood_seconds=round(
        took, 3))
    assert took < 5.0
