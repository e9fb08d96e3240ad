"""Starts and signals with a ``request_id`` across engine SIGKILLs: a retry gets the first
answer and writes nothing new, and the SDK client's retries carry a call over a restart."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

import sdk
from tests.e2e.harness import Stack


def post(url: str, token: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    r = httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {token}"},
                   timeout=30)
    return r.status_code, r.json()


def test_a_request_id_holds_across_engine_restarts(stack: Stack, logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log")
    try:
        start = {"workflow_type": "poison", "task_queue": "nobody", "request_id": "start-1"}
        first = post(engine.url, stack.token, "/api/workflows", start)
        signal = {"name": "go", "request_id": "signal-1"}
        path = f"/api/workflows/{first[1]['workflow_id']}/signals"
        signaled = post(engine.url, stack.token, path, signal)
        engine.kill()
        engine.restart()
        # The answers were lost, say: the caller sends both again.
        assert post(engine.url, stack.token, "/api/workflows", start) == first
        assert post(engine.url, stack.token, path, signal) == signaled
        workflow_id = first[1]["workflow_id"]
        with sdk.Client(engine.url, token=stack.token, retries=30) as client:
            handle = client.get_workflow_handle(workflow_id)
            engine.kill()
            # A signal sent while the engine is down is retried until it is back, once.
            sent = threading.Thread(target=handle.signal, args=("go",))
            sent.start()
            engine.restart()
            sent.join(timeout=120)
            assert not sent.is_alive()
            kinds = [e["event_type"] for e in handle.history()]
        runs = httpx.get(engine.url + "/api/workflows", timeout=30,
                         headers={"Authorization": f"Bearer {stack.token}"}).json()["items"]
    finally:
        engine.stop()
    assert kinds.count("WorkflowExecutionSignaled") == 2  # the first and the retried call
    assert kinds.count("WorkflowExecutionStarted") == 1
    assert len(runs) == 1
