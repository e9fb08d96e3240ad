"""What a run's data or a worker's frame holds never breaks a loop or a socket: numbers of
any size are delivered, strings no database can store and payloads over
``SCHED_MAX_PAYLOAD_BYTES`` fail their own task (visible in the history and the API), and the
worker's socket and every other run go on. Real engine and worker processes; on PostgreSQL +
Redis when ``DATABASE_URL`` / ``REDIS_URL`` say so (where msgpack and jsonb are in play)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

import sdk
from tests.e2e.harness import Engine, Proc, Stack, wait_for

MODULE = "tests.reliability.payload_workflows"
LIMIT = 2 * 1024 * 1024  # SCHED_MAX_PAYLOAD_BYTES, the default


@pytest.fixture
def engine(stack: Stack, logs: Path) -> Iterator[Engine]:
    e = stack.engine(log=logs / "engine.log")
    yield e
    e.stop()


def serve(stack: Stack, engine: Engine, logs: Path) -> Proc:
    return stack.worker(MODULE, engine=engine, log=logs / "worker.log")


def kept_its_socket(logs: Path) -> bool:
    """Whether the worker process never lost its connection."""
    return "disconnected from the engine" not in (logs / "worker.log").read_text()


def event_types(handle: sdk.WorkflowHandle) -> list[str]:
    return [e["event_type"] for e in handle.history()]


def test_numbers_of_any_size_are_delivered_with_the_runs_beside_them(
        stack: Stack, engine: Engine, logs: Path) -> None:
    big = {"u64": 2**64, "huge": 10**40, "negative": -2**70, "float": 1e20, "small": 1}
    with sdk.Client(engine.url, token=stack.token) as client:
        # Started before any worker is there, so one dispatcher tick leases them all.
        handles = [client.start_workflow("echo_input", big if i % 3 == 0 else i)
                   for i in range(9)]
        worker = serve(stack, engine, logs)
        try:
            results = [h.result(timeout=60) for h in handles]
            # The big numbers are also fine as a workflow's own result and in its history.
            again = client.start_workflow("echo_input", [2**64]).result(timeout=60)
        finally:
            worker.stop()
    assert results == [big if i % 3 == 0 else i for i in range(9)]
    assert again == [2**64]
    assert kept_its_socket(logs)


@pytest.mark.parametrize("what", ["nul", "surrogate", "nan"])
def test_an_activity_result_no_database_can_store_fails_the_attempt(
        stack: Stack, engine: Engine, logs: Path, what: str) -> None:
    worker = serve(stack, engine, logs)
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handle = client.start_workflow("bad_result", what)
            outcome = handle.result(timeout=60)
            history = handle.history()
            assert client.start_workflow("echo_input", "after").result(timeout=30) == "after"
    finally:
        worker.stop()
    # Both attempts failed at the engine's door, and the retry policy (two tries) applied.
    assert outcome["type"] == "invalid_payload"
    assert outcome["attempt"] == 2
    assert "'result'" in outcome["message"]
    [failed] = [e for e in history if e["event_type"] == "ActivityTaskFailed"]
    assert failed["attributes"]["failure"]["type"] == "invalid_payload"
    assert kept_its_socket(logs)


def test_a_big_input_is_delivered_and_oversized_payloads_fail_their_own_task(
        stack: Stack, engine: Engine, logs: Path) -> None:
    worker = serve(stack, engine, logs)
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            waiting = client.start_workflow("waits_for_signal")
            # 1.2 MB: over daphne's default message size, within SCHED_MAX_PAYLOAD_BYTES.
            big_input = client.start_workflow("echo_input", "y" * 1_200_000)
            result = client.start_workflow("bad_result", "big")  # a 3 MB activity result
            heartbeat = client.start_workflow("big_heartbeat", 3_000_000)
            workflow_result = client.start_workflow("big_result", 3_000_000)
            activity_input = client.start_workflow("big_activity_input", 3_000_000)
            with pytest.raises(sdk.SchedAPIError) as signal:
                waiting.signal("go", "z" * 3_000_000)
            assert big_input.result(timeout=60) == "y" * 1_200_000
            too_big_result = result.result(timeout=60)
            too_big_heartbeat = heartbeat.result(timeout=60)
            workflow_failures = [wait_for(lambda h=h: (d := h.describe())["last_task_failure"]
                                          and d, timeout=60)
                                 for h in (workflow_result, activity_input)]
            # The socket stayed open: every other run on the worker goes on.
            waiting.signal("go", "small")
            assert waiting.result(timeout=30) == "small"
            assert client.start_workflow("echo_input", "after").result(timeout=30) == "after"
            failed_tasks = event_types(workflow_result).count("WorkflowTaskFailed")
    finally:
        worker.stop()
    for outcome in (too_big_result, too_big_heartbeat):
        assert outcome["type"] == "payload_too_large"
        assert outcome["attempt"] == 2
        assert str(LIMIT) in outcome["message"] and "bytes" in outcome["message"]
    assert "result" in too_big_result["message"]
    assert "heartbeat" in too_big_heartbeat["message"]
    for described in workflow_failures:
        assert described["status"] == "running"
        failure = described["last_task_failure"]
        assert failure["cause"] == "payload_too_large"
        assert failure["type"] == "payload_too_large"
        assert str(LIMIT) in failure["message"]
    assert failed_tasks >= 1
    assert signal.value.status_code == 413 and signal.value.code == "payload_too_large"
    assert str(LIMIT) in signal.value.message
    assert kept_its_socket(logs)


async def _raw_worker(engine: Engine, token: str) -> Any:
    ws = await websockets.connect(engine.url.replace("http", "ws") + "/ws/worker/",
                                  additional_headers={"Authorization": f"Bearer {token}"},
                                  max_size=None)
    await ws.send(json.dumps({"type": "hello", "task_queue": "raw", "identity": "raw"}))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


def test_a_hostile_frame_gets_an_error_frame_and_the_socket_stays_open(
        stack: Stack, engine: Engine) -> None:
    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        ws, welcome = await _raw_worker(engine, stack.token)
        answers = []
        for frame in (
            '{"type":"ping","id":"deep","x":' + "[" * 100_000 + "]" * 100_000 + "}",
            json.dumps({"type": "activity_heartbeat", "id": "nul", "token": "1.x",
                        "details": "a\x00b"}),
            json.dumps({"type": "ping", "id": "big", "pad": "x" * (LIMIT + 10)}),
            # Over daphne's default 1 MiB: read whole, then answered.
            json.dumps({"type": "ping", "id": "mid", "pad": "x" * 1_500_000}),
        ):
            await ws.send(frame)
            answers.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"type": "ping", "id": "p"}))
        answers.append(json.loads(await ws.recv()))
        await ws.close()
        return welcome, answers

    welcome, answers = asyncio.run(scenario())
    assert welcome["max_payload_bytes"] == LIMIT
    deep, nul, big, mid, pong = answers
    assert (deep["type"], deep["code"]) == ("error", "malformed_json")
    assert "nested too deeply" in deep["message"]
    assert (nul["type"], nul["code"], nul["id"]) == ("error", "invalid_payload", "nul")
    assert (big["type"], big["code"], big["id"]) == ("error", "payload_too_large", "big")
    assert str(LIMIT) in big["message"]
    assert mid == {"type": "pong", "id": "mid"}
    assert pong == {"type": "pong", "id": "p"}
    assert "Traceback" not in (engine.log.read_text() if engine.log else "")


def test_a_draining_engine_closes_worker_sockets_with_a_code_daphne_sends(
        stack: Stack, logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log")

    async def scenario() -> int | None:
        ws, _ = await _raw_worker(engine, stack.token)
        assert engine.proc is not None
        engine.proc.signal(15)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), timeout=30)
        except websockets.ConnectionClosed:
            pass
        return int(ws.close_code) if ws.close_code is not None else None

    code = asyncio.run(scenario())
    engine.proc.popen.wait(timeout=30)  # type: ignore[union-attr]
    # A code daphne refuses (1001) leaves the socket to die with the process: 1006.
    assert code == 4001
