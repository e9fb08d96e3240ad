"""An engine SIGKILLed under running work: a restarted engine moves the work again at once,
and the results the workers kept are accepted (no step runs twice). A worker SIGKILLed
costs at most the steps it had in flight. On PostgreSQL with two engines, the sessions of
an engine that stops beating are released within seconds, and a live engine's are not.

The leases here are production's 30 s, so waiting them out (what a restart did before)
fails every bound below.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

import sdk
from tests.e2e.harness import Stack, reruns, wait_for

from .conftest import MODULE

LONG_LEASE = {"SCHED_LEASE_TIMEOUT_SECONDS": "30", "SCHED_WORKER_HEARTBEAT_SECONDS": "0.5"}
# The bound of item "work moves again within 2 s of the engine answering /healthz", plus
# slack for a loaded 2-core machine; waiting out the lease takes 30 s.
MOVE_BOUND_SECONDS = 2.0 + 2.0


def step_state(handle: sdk.WorkflowHandle) -> str | None:
    pending = handle.describe()["pending_activities"]
    return str(pending[0]["state"]) if pending else None


def test_a_restarted_engine_releases_the_leases_of_sessions_that_died_with_it(
        stack: Stack, logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log", extra_env=LONG_LEASE)
    doomed = stack.worker(MODULE, engine=engine, log=logs / "doomed.log",
                          extra_env={"REL_STEP_STALL": "600"})
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handle = client.start_workflow("steps", {"count": 1, "seconds": 0})
            wait_for(lambda: step_state(handle) == "started", timeout=30)
            # The engine and the worker holding the step die together: nobody is left to
            # resume the worker's session.
            engine.kill()
            doomed.kill()
            engine.restart()
            answering = time.monotonic()
            wait_for(lambda: step_state(handle) != "started", timeout=60, interval=0.05)
            moved = time.monotonic() - answering
            stack.worker(MODULE, engine=engine, log=logs / "worker.log")
            assert handle.result(timeout=60) == 1
    finally:
        engine.stop()
    assert moved <= MOVE_BOUND_SECONDS, f"the step moved {moved:.2f} s after /healthz"


def run_under_kill(stack: Stack, logs: Path, *, kill: str, count: int = 6,
                   extra_env: dict[str, str] | None = None) -> tuple[int, int]:
    """``count`` runs of three 1.5 s steps on one worker; SIGKILL the engine or the worker
    while steps run. Returns (step bodies that ran again, steps in flight at the kill)."""
    steps_log = logs / "steps.log"
    steps_log.touch()
    env = {"REL_STEP_LOG": str(steps_log)}
    engine = stack.engine(log=logs / "engine.log", extra_env={**LONG_LEASE, **(extra_env or {})})
    workers = [stack.worker(MODULE, engine=engine, log=logs / "worker-1.log", extra_env=env)]
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handles = [client.start_workflow("steps", {"count": 3, "seconds": 1.5})
                       for _ in range(count)]
            wait_for(lambda: sum(step_state(h) == "started" for h in handles) == count,
                     timeout=60)
            in_flight = count
            if kill == "engine":
                engine.kill()
                engine.restart()
            else:
                workers[0].kill()
                workers.append(stack.worker(MODULE, engine=engine, log=logs / "worker-2.log",
                                            extra_env=env))
            results = [h.result(timeout=120) for h in handles]
    finally:
        for worker in workers:
            worker.stop()
        engine.stop()
    assert results == [3] * count
    return reruns(steps_log), in_flight


def test_an_engine_sigkill_reruns_no_step(stack: Stack, logs: Path) -> None:
    again, in_flight = run_under_kill(stack, logs, kill="engine")
    print(f"engine SIGKILL: {again} of {in_flight} steps in flight ran again")
    assert again == 0


def test_a_worker_sigkill_reruns_at_most_its_steps_in_flight(stack: Stack,
                                                             logs: Path) -> None:
    again, in_flight = run_under_kill(stack, logs, kill="worker")
    print(f"worker SIGKILL: {again} of {in_flight} steps in flight ran again")
    assert 0 < again <= in_flight


def on_postgres(stack: Stack) -> bool:
    return stack.env.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))


def test_sessions_of_an_engine_that_stops_beating_are_released_and_a_live_ones_kept(
        stack: Stack, logs: Path) -> None:
    if not on_postgres(stack):
        pytest.skip("two engines need a shared PostgreSQL (DATABASE_URL)")
    leader = stack.engine(log=logs / "leader.log", extra_env=LONG_LEASE)
    time.sleep(1.0)  # the first engine takes the loops
    paused = stack.engine(log=logs / "paused.log", extra_env=LONG_LEASE)
    steps_log = logs / "steps.log"
    steps_log.touch()
    env = {"REL_STEP_LOG": str(steps_log)}
    # Queue "a": a worker on the engine to be paused, holding its step; queue "b": a worker
    # on the live engine, with a step longer than the pause.
    stalled = stack.worker(MODULE, engine=paused, task_queue="a", log=logs / "stalled.log",
                           extra_env={**env, "REL_STEP_STALL": "600"})
    healthy = stack.worker(MODULE, engine=leader, task_queue="b", log=logs / "healthy.log",
                           extra_env=env)
    rescuer = None
    try:
        with sdk.Client(leader.url, token=stack.token) as client:
            handle = client.start_workflow("steps", {"count": 1, "seconds": 0}, task_queue="a")
            kept = client.start_workflow("steps", {"count": 1, "seconds": 12}, task_queue="b")
            wait_for(lambda: step_state(handle) == "started" and step_state(kept) == "started",
                     timeout=30)
            assert paused.proc is not None
            paused.proc.signal(signal.SIGSTOP)
            stopped = time.monotonic()
            rescuer = stack.worker(MODULE, engine=leader, task_queue="a",
                                   log=logs / "rescuer.log", extra_env=env)
            wait_for(lambda: step_state(handle) != "started", timeout=60, interval=0.1)
            moved = time.monotonic() - stopped
            assert handle.result(timeout=60) == 1  # on the rescuer
            paused.proc.signal(signal.SIGCONT)
            assert kept.result(timeout=60) == 1
            kept_history = [e["event_type"] for e in kept.history()]
    finally:
        if paused.proc is not None:
            paused.proc.signal(signal.SIGCONT)
        stalled.kill()
        for worker in (healthy, rescuer):
            if worker is not None:
                worker.stop()
        paused.stop()
        leader.stop()
    # The engine timeout (5 s) plus a reclaim tick and slack; the lease is 30 s.
    assert moved <= 5.0 + 1.0 + 3.0, f"released {moved:.2f} s after the engine stopped"
    # The live engine's worker kept its step: it ran once, and no lease went back.
    ran = [line.split()[0] for line in steps_log.read_text().splitlines()]
    assert ran.count(kept.workflow_id) == 1
    assert kept_history.count("ActivityTaskStarted") == 1
    assert "ActivityTaskTimedOut" not in kept_history
