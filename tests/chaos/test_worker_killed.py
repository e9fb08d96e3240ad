"""SIGKILL a worker while it holds work: the work goes to another worker, unchanged."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import sdk
from tests.e2e.harness import Stack, reruns, wait_for

from . import figures, load

STALL = {"CHAOS_STALL_ACTIVITY": "60"}


def event_types(handle: sdk.WorkflowHandle) -> list[str]:
    return [e["event_type"] for e in handle.history()]


def test_activity_of_a_killed_worker_runs_elsewhere_with_its_input_and_attempt(
        stack: Stack, logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log")
    queue = "q-" + uuid.uuid4().hex[:6]
    doomed = stack.worker(*load.WORKER, engine=engine, task_queue=queue, log=logs / "a.log",
                          extra_env={**STALL, "CHAOS_WORKER_NAME": "doomed"})
    survivor = None
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            payload = {"order": 7, "items": ["a", "b"]}
            handle = client.start_workflow("held", payload, task_queue=queue)
            wait_for(lambda: [a for a in handle.describe()["pending_activities"]
                              if a["state"] == "started"], timeout=30)
            survivor = stack.worker(*load.WORKER, engine=engine, task_queue=queue,
                                    log=logs / "b.log", extra_env={"CHAOS_WORKER_NAME": "b"})
            killed_at = time.monotonic()
            doomed.kill()
            result = handle.result(timeout=60)
            redelivered_after = time.monotonic() - killed_at
    finally:
        if survivor is not None:
            survivor.stop()
        engine.stop()
    assert result == {"input": payload, "attempt": 1, "worker": "b"}
    figures.record("worker_killed", activity_redelivered_seconds=round(redelivered_after, 2))


def test_workflow_task_of_a_killed_worker_runs_elsewhere(stack: Stack, logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log")
    queue = "q-" + uuid.uuid4().hex[:6]
    doomed = stack.worker(*load.WORKER, engine=engine, task_queue=queue, log=logs / "a.log",
                          extra_env={"CHAOS_STALL_WORKFLOW": "60", "CHAOS_WORKER_NAME": "doomed"})
    survivor = None
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handle = client.start_workflow("stall_once", "x", task_queue=queue)
            wait_for(lambda: "WorkflowTaskStarted" in event_types(handle), timeout=30)
            survivor = stack.worker(*load.WORKER, engine=engine, task_queue=queue,
                                    log=logs / "b.log", extra_env={"CHAOS_WORKER_NAME": "b"})
            killed_at = time.monotonic()
            doomed.kill()
            result = handle.result(timeout=60)
            redelivered_after = time.monotonic() - killed_at
            types = event_types(handle)
    finally:
        if survivor is not None:
            survivor.stop()
        engine.stop()
    assert result == {"ran_on": "b", "input": "x"}
    assert types.count("WorkflowExecutionStarted") == 1
    assert types.count("ActivityTaskScheduled") == 1
    figures.record("worker_killed", workflow_task_redelivered_seconds=round(redelivered_after, 2))


def test_workers_killed_under_load(stack: Stack, logs: Path) -> None:
    count = max(20, load.env_int("CHAOS_WORKFLOWS", 500) // 5)
    kills = load.env_int("CHAOS_KILLS", 5)
    seed = load.env_int("CHAOS_SEED", int(time.time()))
    rng = random.Random(seed)
    prefix = f"wkill-{seed}-"
    engine = stack.engine(log=logs / "engine.log")
    steps = logs / "steps.log"
    steps.touch()
    step_env = {"CHAOS_STEP_LOG": str(steps)}
    workers = [stack.worker(*load.WORKER, engine=engine, log=logs / f"w{i}.log",
                            extra_env=step_env) for i in range(3)]
    killed = 0
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            for i in range(count):
                load.start(client, "chain", f"{prefix}{i}", {"start": i, "sleep": 0.2})
        for _ in range(kills):
            time.sleep(rng.uniform(0.5, 2.0))
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            killed += 1
            workers[victim] = stack.worker(*load.WORKER, engine=engine, extra_env=step_env,
                                           log=logs / f"w{victim}-{killed}.log")
        seen = load.wait_closed(stack, prefix, count, timeout=max(120.0, count * 1.0))
        report = load.audit(stack, prefix)
    finally:
        for worker in workers:
            worker.stop()
        engine.stop()
    figures.record("worker_killed", workflows=count, worker_kills=killed, seed=seed,
                   completed=seen.get("completed", 0), problems=report["problem_count"],
                   activity_reruns=reruns(steps))
    assert seen == {"completed": count}, f"seed {seed}: {seen}"
    assert report["problems"] == [], f"seed {seed}: {report['problems']}"
