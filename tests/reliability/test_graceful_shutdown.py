"""SIGTERM on the engine or a worker: nothing in flight is lost, and the process exits in time.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

import sdk
from tests.e2e.harness import Stack, wait_for

from .conftest import MODULE

GRACE = 6.0


def started_activity(handle: sdk.WorkflowHandle) -> bool:
    return any(a["state"] == "started" for a in handle.describe()["pending_activities"])


def test_engine_sigterm_lets_held_work_commit_then_exits_in_time(stack: Stack,
                                                                 logs: Path) -> None:
    log = logs / "engine.log"
    engine = stack.engine(log=log, extra_env={"SCHED_SHUTDOWN_GRACE_SECONDS": str(GRACE)})
    worker = stack.worker(MODULE, engine=engine, log=logs / "worker.log",
                          extra_env={"REL_WORKER_NAME": "w"})
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handles = [client.start_workflow("slow_then_quick", 1.5) for _ in range(3)]
            wait_for(lambda: all(started_activity(h) for h in handles), timeout=30)
            assert engine.proc is not None
            engine.proc.signal(signal.SIGTERM)
            signalled = time.monotonic()
            # New connections are refused at once, while the held work still drains.
            time.sleep(0.3)
            with pytest.raises(httpx.TransportError):
                httpx.get(engine.url + "/healthz", timeout=1)
            assert engine.proc.popen.poll() is None, "exited without draining"
            code = engine.proc.popen.wait(timeout=GRACE + 5)
            took = time.monotonic() - signalled
            engine.restart()
            results = [h.result(timeout=60) for h in handles]
            histories = [[e["event_type"] for e in h.history()] for h in handles]
    finally:
        worker.stop()
        engine.stop()
    assert code == 0
    assert took <= GRACE + 1.0, f"took {took:.1f} s"
    # The first activity's completion committed during the drain: it did not run twice.
    assert all(r["first"]["attempt"] == 1 for r in results)
    assert all(h.count("ActivityTaskCompleted") == 2 for h in histories)
    text = log.read_text()
    assert "leader locks released" in text
    assert "unfinished tasks back" not in text  # all it held completed within the grace


def test_engine_sigterm_hands_back_work_that_outlasts_the_grace(stack: Stack,
                                                                 logs: Path) -> None:
    log = logs / "engine.log"
    grace = 3.0
    engine = stack.engine(log=log, extra_env={"SCHED_SHUTDOWN_GRACE_SECONDS": str(grace)})
    worker = stack.worker(MODULE, engine=engine, log=logs / "worker.log")
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handle = client.start_workflow("slow_then_quick", 20)
            wait_for(lambda: started_activity(handle), timeout=30)
            assert engine.proc is not None
            engine.proc.signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = engine.proc.popen.wait(timeout=grace + 5)
            took = time.monotonic() - signalled
    finally:
        worker.stop()
        engine.stop()
    assert code == 0
    assert took <= grace + 1.0, f"took {took:.1f} s"
    assert "handing 1 unfinished tasks back" in log.read_text()


def test_worker_sigterm_finishes_what_it_holds(stack: Stack, logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log")
    leaving = stack.worker(MODULE, engine=engine, log=logs / "leaving.log",
                           extra_env={"REL_WORKER_NAME": "leaving"})
    staying = None
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handle = client.start_workflow("slow_then_quick", 1.5)
            wait_for(lambda: started_activity(handle), timeout=30)
            staying = stack.worker(MODULE, engine=engine, log=logs / "staying.log",
                                   extra_env={"REL_WORKER_NAME": "staying"})
            leaving.popen.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = leaving.popen.wait(timeout=15)
            took = time.monotonic() - signalled
            result = handle.result(timeout=30)
    finally:
        if staying is not None:
            staying.stop()
        engine.stop()
    assert code == 0
    assert took < 10.0
    # The held attempt finished on the leaving worker; the next activity ran elsewhere.
    assert result == {"first": {"attempt": 1, "worker": "leaving"},
                      "second": {"attempt": 1, "worker": "staying"}}
