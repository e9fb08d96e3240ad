"""Hostile frames on the worker websocket (hypothesis): random bytes, malformed JSON, wrong
types, oversized frames, unknown message types, replayed and forged task tokens, completions
of another worker's lease, and floods. Every frame gets an answer, the socket stays open, the
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

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
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
    )


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
