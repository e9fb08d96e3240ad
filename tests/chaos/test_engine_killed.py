"""SIGKILL the engine again and again while a workload runs: nothing is lost or doubled.

``CHAOS_WORKFLOWS`` workflows (default 500) of ``STEPS`` activities and a short sleep run on
two workers while the engine is killed ``CHAOS_KILLS`` times (default 5) at random moments
(``CHAOS_SEED``) and restarted each time. Afterwards every workflow completed with the right
result and the audit finds nothing wrong (see ``audit.py``).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import sdk
from tests.e2e.harness import Stack, reruns

from . import figures, load
from .chaos_workflows import STEPS


def test_engine_killed_again_and_again(stack: Stack, logs: Path) -> None:
    count = load.env_int("CHAOS_WORKFLOWS", 500)
    kills = load.env_int("CHAOS_KILLS", 5)
    seed = load.env_int("CHAOS_SEED", int(time.time()))
    rng = random.Random(seed)
    prefix = f"kill-{seed}-"
    engine = stack.engine(log=logs / "engine.log")
    steps = logs / "steps.log"
    steps.touch()
    workers = [stack.worker(*load.WORKER, engine=engine, log=logs / f"worker-{i}.log",
                            extra_env={"CHAOS_WORKER_NAME": f"w{i}",
                                       "CHAOS_STEP_LOG": str(steps)}) for i in range(2)]
    started_at = time.monotonic()
    killed = 0
    starting_done = threading.Event()

    def start_all() -> None:
        with sdk.Client(engine.url, token=stack.token, timeout=10) as client:
            for i in range(count):
                load.start(client, "chain", f"{prefix}{i}", {"start": i, "sleep": 0.3})
        starting_done.set()

    starter = threading.Thread(target=start_all, name="chaos-starter", daemon=True)
    starter.start()
    try:
        # Kills at random moments, the first ones while the workflows are still being started.
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 4.0))
            engine.kill()
            killed += 1
            time.sleep(rng.uniform(0.0, 1.0))
            engine.restart()
        starter.join(timeout=300)
        assert starting_done.is_set(), f"seed {seed}: the workflows could not all be started"
        seen = load.wait_closed(stack, prefix, count, timeout=max(180.0, count * 0.6))
        elapsed = time.monotonic() - started_at
        report = load.audit(stack, prefix)
        outcomes = load.results(stack, prefix)
    finally:
        for worker in workers:
            worker.stop()
        engine.stop()

    expected = {str(i + STEPS) for i in range(count)}
    wrong = sum(n for result, n in outcomes.items() if result not in expected)
    figures.record("engine_killed", workflows=count, kills=killed, restarts=killed, seed=seed,
                   seconds=round(elapsed, 1), history_events=report["events"],
                   completed=seen.get("completed", 0), wrong_results=wrong,
                   problems=report["problem_count"], tasks_left=report["tasks_left"],
                   timers_left=report["timers_left"], activity_reruns=reruns(steps),
                   database="postgres" if load.on_postgres(stack) else "sqlite")
    assert seen == {"completed": count}, f"seed {seed}: {seen}"
    assert wrong == 0, f"seed {seed}: wrong results {outcomes}"
    assert report["problems"] == [], f"seed {seed}: {report['problems']}"
    assert report["tasks_left"] == 0 and report["timers_left"] == 0, report
