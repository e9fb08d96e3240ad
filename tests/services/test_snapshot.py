"""The snapshot property: after random runs driven through the services, every execution's
stored state equals the fold of its history, and its task and timer rows match that state.

Runs are driven by a seeded ``random.Random`` through the same services the consumer and the
loops call: dispatch ticks, workflow task completions and failures (with random commands,
sometimes handing work straight back to the completing worker), activity completions,
failures, heartbeats and cancels, signals, cancel requests, terminations, timer firings,
lease loss (release, disconnect, reclaim) and stale replays of old tokens.

With ``risky`` the generated command mixes also schedule work and close the run in one
task, or schedule and cancel the same work in one task.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from django.utils import timezone

from dispatch import services as dispatch
from dispatch.models import Task, TaskState
from timers.models import Timer
from timers.services import timer_fire
from workflows.errors import Conflict
from workflows.models import Execution
from workflows.services import (
    activity_task_complete,
    activity_task_fail,
    activity_task_heartbeat,
    workflow_request_cancel,
    workflow_signal,
    workflow_start,
    workflow_task_complete,
    workflow_task_fail,
    workflow_terminate,
)

from .conftest import QUEUE, WORKFLOW, Worker, assert_consistent, register, tick

RUNS = 40
OPS = 1200


@dataclass
class Held:
    worker: Worker
    message: dict[str, Any]


@dataclass
class Sim:
    rng: random.Random
    workers: dict[str, Worker]
    held: dict[str, Held] = field(default_factory=dict)  # token -> the task message
    spent: list[str] = field(default_factory=list)        # tokens used or lost
    started: int = 0
    # Also generate the command mixes of the write_transition bugs (see the module docstring).
    risky: bool = False
    stats: dict[str, int] = field(default_factory=dict)

    def note(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # ---- helpers ---------------------------------------------------------------------------

    def receive(self, deliveries: list[tuple[str, dict[str, Any]]]) -> None:
        by_channel = {w.channel: w for w in self.workers.values()}
        for channel, message in deliveries:
            self.held[message["token"]] = Held(by_channel[channel], message)

    def take(self, kind: str) -> tuple[str, Held] | None:
        tokens = [t for t, h in self.held.items() if h.message["type"] == kind]
        if not tokens:
            return None
        token = self.rng.choice(sorted(tokens))
        held = self.held.pop(token)
        self.spent.append(token)
        return token, held

    def lose(self, which: Callable[[Held], bool]) -> None:
        """Tasks whose leases went back: their workers may still (wrongly) try to finish them,
        which ``op_replay_stale`` does."""
        for token in [t for t, h in self.held.items() if which(h)]:
            del self.held[token]
            self.spent.append(token)

    def lessee(self, worker: Worker) -> Any:
        return worker.lessee(activity_slots=self.rng.choice([0, 2])) if self.rng.random() < 0.6 \
            else None

    def open_runs(self) -> list[Execution]:
        return list(Execution.objects.filter(status="running").order_by("id"))

    def commands(self, run: Execution) -> list[dict[str, Any]]:
        rng = self.rng
        state = run.core_state()
        seq = state.max_seq
        if rng.random() < 0.15 and not self.risky:
            return [rng.choice([
                {"kind": "complete_workflow", "result": seq},
                {"kind": "fail_workflow", "failure": {"type": "Bad", "message": "m"}},
                {"kind": "cancel_workflow"},
                {"kind": "continue_as_new", "input": {"from": str(run.run_id)}},
            ])]
        cmds: list[dict[str, Any]] = []
        for _ in range(rng.randint(0, 3)):
            what = rng.choice(["activity", "activity", "activity", "timer", "marker",
                               "cancel_timer", "cancel_activity"])
            if what == "cancel_timer" and state.timers:
                cmds.append({"kind": "cancel_timer", "seq": rng.choice(sorted(state.timers))})
            elif what == "cancel_activity" and state.activities:
                cmds.append({"kind": "request_cancel_activity",
                             "seq": rng.choice(sorted(state.activities))})
            elif what == "timer":
                seq += 1
                cmds.append({"kind": "start_timer", "seq": seq,
                             "duration_ms": rng.choice([0, 10, 60_000])})
            elif what == "marker":
                seq += 1
                cmds.append({"kind": "record_marker", "seq": seq, "marker_name": "m"})
            elif what == "activity":
                seq += 1
                options: dict[str, Any] = {"retry_policy": {
                    "maximum_attempts": rng.choice([0, 1, 2, 3]), "initial_interval_ms": 10}}
                for key in ("start_to_close_ms", "heartbeat_ms", "schedule_to_close_ms",
                            "schedule_to_start_ms"):
                    if rng.random() < 0.25:
                        options[key] = rng.choice([50, 5_000])
                cmds.append({"kind": "schedule_activity", "seq": seq, "input": [seq],
                             "activity_type": rng.choice(["charge", "ship", "unserved"]),
                             **options})
            if self.risky and what in ("activity", "timer") and rng.random() < 0.3:
                kind = "request_cancel_activity" if what == "activity" else "cancel_timer"
                cmds.append({"kind": kind, "seq": seq})
        if self.risky and rng.random() < 0.15:
            cmds.append(rng.choice([{"kind": "complete_workflow"}, {"kind": "cancel_workflow"},
                                    {"kind": "continue_as_new"}]))
        return cmds

    def expect_live(self, token: str, call: Any) -> Any:
        """Call a completion; it must succeed exactly when ``token`` is a live lease."""
        live = Task.objects.filter(token=token, state=TaskState.LEASED).exists()
        try:
            result = call()
        except Conflict as exc:
            assert not live, f"a live lease was refused: {exc.code} {exc.message}"
            assert exc.code in ("stale_task", "run_closed"), exc.code
            self.note("refused")
            return None
        assert live, "a completion with a dead token was accepted"
        return result

    # ---- operations ------------------------------------------------------------------------

    def op_start(self) -> None:
        self.started += 1
        workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, input=self.started,
                       workflow_id=f"wf-{self.started}",
                       execution_timeout_ms=self.rng.choice([None, None, None, 60_000]))

    def op_tick(self) -> None:
        self.receive(tick())

    def op_complete_workflow_task(self) -> None:
        got = self.take("workflow_task")
        if got is None:
            return
        token, held = got
        run = Execution.objects.get(run_id=held.message["run_id"])
        cmds = self.commands(run)
        lessee = self.lessee(held.worker)
        outcome = self.expect_live(token, lambda: workflow_task_complete(
            token=token, commands=cmds, worker_id=held.worker.worker_id, lessee=lessee))
        if outcome is not None:
            self.note("workflow_task_complete")
            self.receive([(held.worker.channel, m) for m in outcome.deliveries])

    def op_fail_workflow_task(self) -> None:
        got = self.take("workflow_task")
        if got is None:
            return
        token, held = got
        self.expect_live(token, lambda: workflow_task_fail(
            token=token, cause="bug", failure={"type": "Bug"},
            worker_id=held.worker.worker_id))

    def op_complete_activity(self) -> None:
        got = self.take("activity_task")
        if got is None:
            return
        token, held = got
        lessee = self.lessee(held.worker)
        outcome = self.expect_live(token, lambda: activity_task_complete(
            token=token, result=held.message["input"], worker_id=held.worker.worker_id,
            lessee=lessee))
        if outcome is not None:
            self.note("activity_task_complete")
            self.receive([(held.worker.channel, m) for m in outcome.deliveries])

    def op_fail_activity(self) -> None:
        got = self.take("activity_task")
        if got is None:
            return
        token, held = got
        task = Task.objects.filter(token=token).first()
        canceled = bool(task and task.cancel_requested)
        lessee = self.lessee(held.worker)
        outcome = self.expect_live(token, lambda: activity_task_fail(
            token=token, failure={"type": "IOError", "non_retryable": self.rng.random() < 0.2},
            canceled=canceled, worker_id=held.worker.worker_id, lessee=lessee))
        if outcome is not None:
            self.receive([(held.worker.channel, m) for m in outcome.deliveries])

    def op_heartbeat(self) -> None:
        tokens = sorted(t for t, h in self.held.items() if h.message["type"] == "activity_task")
        if tokens:
            token = self.rng.choice(tokens)
            self.expect_live(token, lambda: activity_task_heartbeat(
                token=token, details={"at": self.rng.random()}))

    def op_replay_stale(self) -> None:
        if not self.spent:
            return
        token = self.rng.choice(self.spent)
        self.expect_live(token, lambda: workflow_task_complete(token=token, commands=[]))
        self.expect_live(token, lambda: activity_task_complete(token=token, result=None))

    def op_outside(self) -> None:
        runs = self.open_runs()
        if not runs:
            return
        run = self.rng.choice(runs)
        roll = self.rng.random()
        if roll < 0.7:
            workflow_signal(workflow_id=run.workflow_id, name="go", input=roll)
        elif roll < 0.93:
            workflow_request_cancel(workflow_id=run.workflow_id, reason="user")
        else:
            workflow_terminate(workflow_id=run.workflow_id, reason="ops")

    def op_fire_timer(self) -> None:
        timers = list(Timer.objects.order_by("fire_at", "id")[:3])  # time moves on: early ones
        if timers:
            timer = self.rng.choice(timers)
            timer_fire(timer_id=timer.pk, now=max(timer.fire_at, timezone.now()))
            self.note(f"fire_{timer.kind}")

    def op_release(self) -> None:
        leased = list(Task.objects.filter(state=TaskState.LEASED).order_by("id"))
        if leased:
            task = self.rng.choice(leased)
            dispatch.release_task(task.pk, now=timezone.now())
            self.lose(lambda h: h.message["token"] == task.token)
            self.note("release")

    def op_disconnect(self) -> None:
        worker = self.rng.choice(sorted(self.workers.values(), key=lambda w: w.worker_id))
        dispatch.worker_disconnect(worker_id=worker.worker_id, now=timezone.now())
        self.lose(lambda h: h.worker.worker_id == worker.worker_id)
        register(worker.worker_id)
        self.note("disconnect")

    def op_reclaim(self) -> None:
        now = timezone.now() + timedelta(seconds=60)
        dispatch.reclaim(now=now)  # every session is silent by then: all leases go back
        assert not Task.objects.filter(state=TaskState.LEASED).exists()
        self.lose(lambda h: True)
        for worker in self.workers.values():
            register(worker.worker_id)
        self.note("reclaim")

    WEIGHTS: ClassVar[dict[str, float]] = {
        "tick": 10, "complete_workflow_task": 10, "fail_workflow_task": 1,
        "complete_activity": 6, "fail_activity": 3, "heartbeat": 1, "replay_stale": 2,
        "outside": 3, "fire_timer": 5, "release": 1, "disconnect": 0.5, "reclaim": 0.3,
    }

    def step(self) -> None:
        names = list(self.WEIGHTS)
        op = self.rng.choices(names, weights=[self.WEIGHTS[n] for n in names])[0]
        getattr(self, "op_" + op)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("seed", "risky"), [(1, False), (2, False), (3, True)])
def test_snapshot_equals_the_fold_of_history_on_random_runs(seed: int, risky: bool,
                                                            leader: int) -> None:
    sim = Sim(random.Random(seed), {w: register(w) for w in ("w1", "w2")}, risky=risky)
    for _ in range(RUNS // 2):
        sim.op_start()
    for i in range(OPS):
        if sim.started < RUNS and i % (OPS // (RUNS // 2)) == 0:
            sim.op_start()
        sim.step()
        if i % 200 == 0:
            for run in Execution.objects.all():
                assert_consistent(run)
    executions = list(Execution.objects.all())
    assert len(executions) >= RUNS
    statuses = {run.status for run in executions}
    for run in executions:
        assert_consistent(run)
    # The mix really exercised the engine: runs closed in several ways, work was done.
    assert len(statuses) >= 4, statuses
    assert sim.stats.get("workflow_task_complete", 0) > 50, sim.stats
    assert sim.stats.get("activity_task_complete", 0) > 10, sim.stats
    assert sim.stats.get("refused", 0) > 0, sim.stats
