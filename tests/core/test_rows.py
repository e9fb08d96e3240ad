"""The rows match the state: a property of the core, checked without a database.

Random runs are driven through ``decide`` (``strategies.Driver``), with the steps the engine
takes around it besides: the dispatcher leasing and releasing activities, attempts failing
and timing out, back-offs ending, schedule-to-start/close deadlines passing. Each
transition's effects are applied to a small in-memory model of the task and timer tables,
doing exactly what the stores do; after every step the model must agree with the state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflows.core import commands as c
from workflows.core import decide, retry
from workflows.core import effects as fx
from workflows.core.events import EventType
from workflows.core.state import ExecutionState

from .strategies import Draw, Driver, Step, retry_policies

E = EventType
K = fx.TimerKind


@dataclass
class TaskRow:
    kind: fx.TaskKind
    scheduled_event_id: int
    seq: int | None
    options: dict[str, Any]
    state: fx.TaskState = fx.TaskState.READY
    attempt: int = 1
    cancel_requested: bool = False
    leased_at: Any = None


class Tables:
    """The task and timer rows of one run, as the stores would leave them."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[fx.TaskKind, int], TaskRow] = {}
        self.timers: Counter[tuple[K, int | None]] = Counter()
        self.successors: list[fx.StartSuccessor] = []

    def activities(self, state: fx.TaskState | None = None) -> list[TaskRow]:
        return [r for r in self.tasks.values() if r.kind is fx.TaskKind.ACTIVITY
                and (state is None or r.state is state)]

    def activity(self, seq: int) -> TaskRow:
        (row,) = [r for r in self.activities() if r.seq == seq]
        return row

    def take_timer(self, kind: K, seq: int | None) -> None:
        """A timer fired: the timer manager deletes its row before deciding."""
        assert self.timers[(kind, seq)] > 0, f"no {kind} timer {seq} to fire"
        self.timers[(kind, seq)] -= 1
        self.timers += Counter()  # drop zero counts

    def apply(self, effects: list[fx.Effect]) -> None:
        for e in effects:
            if isinstance(e, fx.CreateTask):
                key = (e.kind, e.scheduled_event_id)
                assert key not in self.tasks, f"a second task row for {key}"
                self.tasks[key] = TaskRow(e.kind, e.scheduled_event_id, e.seq, dict(e.options))
            elif isinstance(e, fx.DropTask):
                key = (e.kind, e.scheduled_event_id)
                assert key in self.tasks, f"dropping task {key} that has no row"
                del self.tasks[key]
            elif isinstance(e, fx.LeaseWorkflowTask):
                row = self.tasks[(fx.TaskKind.WORKFLOW, e.scheduled_event_id)]
                assert row.state is fx.TaskState.READY
                row.state = fx.TaskState.LEASED
            elif isinstance(e, fx.StartTimer):
                self.timers[(e.kind, e.seq)] += 1
            elif isinstance(e, fx.DropTimers):
                for kind in e.kinds:
                    self.timers.pop((kind, e.seq), None)
            elif isinstance(e, fx.RetryActivity):
                row = self.activity(e.seq)
                assert row.state is fx.TaskState.LEASED, "only a running attempt is retried"
                assert e.attempt == row.attempt + 1
                row.state, row.attempt = fx.TaskState.BACKOFF, e.attempt
                self.timers.pop((K.ACTIVITY_ATTEMPT, e.seq), None)
                self.timers[(K.ACTIVITY_RETRY, e.seq)] += 1
            elif isinstance(e, fx.ReadyActivity):
                row = self.activity(e.seq)
                assert row.state is fx.TaskState.BACKOFF
                row.state = fx.TaskState.READY
            elif isinstance(e, fx.RequestActivityCancel):
                row = self.activity(e.seq)
                assert row.state is fx.TaskState.LEASED, "only a leased activity is asked"
                row.cancel_requested = True
            elif isinstance(e, fx.CloseRun):
                self.tasks.clear()
                self.timers.clear()
            elif isinstance(e, fx.StartSuccessor):
                self.successors.append(e)

    def check(self, state: ExecutionState) -> None:
        if not state.is_open:
            assert not self.tasks and not self.timers, "a closed run keeps rows"
            return
        wt = state.workflow_task
        workflow_rows = [r for r in self.tasks.values() if r.kind is fx.TaskKind.WORKFLOW]
        if wt is None:
            assert workflow_rows == []
            if state.workflow_task_needed:  # a failed workflow task: its retry is coming
                assert self.timers[(K.WORKFLOW_TASK_RETRY, None)] >= 1, "stranded run"
        else:
            assert [r.scheduled_event_id for r in workflow_rows] == [wt.scheduled_event_id]
            started = workflow_rows[0].state is fx.TaskState.LEASED
            assert started == (wt.started_event_id is not None)
        rows = self.activities()
        assert sorted(r.seq for r in rows if r.seq is not None) == sorted(state.activities)
        for row in rows:
            assert row.seq is not None
            assert row.scheduled_event_id == state.activities[row.seq].scheduled_event_id
            if row.cancel_requested:
                assert state.activities[row.seq].cancel_requested
        users = [seq for (kind, seq), n in self.timers.items() if kind is K.USER for _ in range(n)]
        assert sorted(s for s in users if s is not None) == sorted(state.timers)
        backoff = {r.seq for r in self.activities(fx.TaskState.BACKOFF)}
        leased = {r.seq for r in self.activities(fx.TaskState.LEASED)}
        for (kind, seq), n in self.timers.items():
            if kind is K.ACTIVITY_RETRY:
                assert seq in backoff and n == 1, "a retry timer for an activity not waiting"
            elif kind is K.ACTIVITY_ATTEMPT:
                assert seq in leased and n == 1, "an attempt timer for an activity not running"
            elif kind in (K.ACTIVITY_SCHEDULE_TO_START, K.ACTIVITY_SCHEDULE_TO_CLOSE):
                assert seq in state.activities and n == 1
        for seq in backoff:
            assert self.timers[(K.ACTIVITY_RETRY, seq)] == 1, "an activity in backoff forever"


class RowsDriver(Driver):
    """``Driver`` plus the engine's steps around ``decide``, keeping ``tables`` as it goes."""

    def __init__(self, draw: Draw[Any]) -> None:
        super().__init__(draw, closing_weight=1)
        self.tables = Tables()
        self.tables.apply(self.steps[0].transition.effects)

    def options(self) -> list[str]:
        ops = super().options()
        if not ops:
            return ops
        tables = self.tables
        if tables.activities(fx.TaskState.READY):
            ops += ["lease_activity"] * 8
        if tables.activities(fx.TaskState.LEASED):
            ops += ["fail_attempt"] * 4 + ["release_activity"]
        for kind, op in ((K.ACTIVITY_ATTEMPT, "attempt_timeout"),
                         (K.ACTIVITY_RETRY, "end_backoff"),
                         (K.ACTIVITY_SCHEDULE_TO_START, "schedule_to_start"),
                         (K.ACTIVITY_SCHEDULE_TO_CLOSE, "schedule_to_close")):
            if any(k is kind for k, _ in tables.timers):
                ops += [op] * 2
        return ops

    # ---- decide calls with what the services pass in ---------------------------------------

    def commands(self, s: ExecutionState) -> list[c.Command]:
        cmds = [self._with_options(cmd) if isinstance(cmd, c.ScheduleActivity) else cmd
                for cmd in super().commands(s)]
        if cmds and isinstance(cmds[-1], c.TERMINAL_COMMANDS) and self.draw(st.booleans()):
            cmds[-1] = c.ContinueAsNew(input=1)
        return cmds

    def _with_options(self, cmd: c.ScheduleActivity) -> c.ScheduleActivity:
        ms = st.none() | st.none() | st.integers(1, 10**6)
        policy = self.draw(st.just(c.RetryPolicy(initial_interval_ms=10, maximum_attempts=4))
                           | retry_policies())
        return replace(cmd, retry_policy=policy, schedule_to_close_ms=self.draw(ms),
                       schedule_to_start_ms=self.draw(ms), start_to_close_ms=self.draw(ms),
                       heartbeat_ms=self.draw(ms))

    def _complete_workflow_task(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        assert s.workflow_task is not None
        cmds = self.commands(s)
        d["commands"] = cmds
        leased = {r.seq for r in self.tables.activities(fx.TaskState.LEASED)
                  if r.seq is not None}
        return decide.complete_workflow_task(
            s, scheduled_event_id=s.workflow_task.scheduled_event_id, commands=cmds,
            worker="w1", now=self.now(), leased_activities=leased, successor_run_id="run-2",
            execution_timeout_ms=None, child_run_ids={
                cmd.seq: f"child-{cmd.seq}" for cmd in cmds
                if isinstance(cmd, c.StartChildWorkflow)})

    def _fire_timer(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        t = super()._fire_timer(s, d)
        self.tables.take_timer(K.USER, d["seq"])
        return t

    def _retry_workflow_task(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        self.tables.take_timer(K.WORKFLOW_TASK_RETRY, None)
        return super()._retry_workflow_task(s, d)

    def _pick(self, state: fx.TaskState | None = None) -> TaskRow:
        rows = sorted(self.tables.activities(state), key=lambda r: r.scheduled_event_id)
        row: TaskRow = self.draw(st.sampled_from(rows))
        return row

    def _pick_timer(self, kind: K) -> TaskRow:
        seqs = sorted(seq for k, seq in self.tables.timers if k is kind and seq is not None)
        seq = self.draw(st.sampled_from(seqs))
        self.tables.take_timer(kind, seq)
        return self.tables.activity(seq)

    def _lease_activity(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        """The dispatcher (or a lessee) leases a ready activity: its attempt deadline."""
        now = self.now()
        row = self._pick(fx.TaskState.READY)
        row.state, row.leased_at = fx.TaskState.LEASED, now
        if retry.attempt_deadline(row.options, leased_at=now, last_heartbeat=now):
            self.tables.timers[(K.ACTIVITY_ATTEMPT, row.seq)] += 1
        return decide.Transition(s, now)

    def _release_activity(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        """The worker went away: the activity is ready again, its attempt timer dropped."""
        row = self._pick(fx.TaskState.LEASED)
        row.state = fx.TaskState.READY
        self.tables.timers.pop((K.ACTIVITY_ATTEMPT, row.seq), None)
        return decide.Transition(s, self.now())

    def _fail_attempt(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        row = self._pick(fx.TaskState.LEASED)
        assert row.seq is not None
        failure = {"type": self.draw(st.sampled_from(["IOError", "ValueError"])),
                   "non_retryable": self.draw(st.sampled_from([False, False, True]))}
        return decide.fail_activity_attempt(s, seq=row.seq, attempt=row.attempt,
                                            options=row.options, failure=failure,
                                            worker="w2", now=self.now())

    def _attempt_timeout(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        row = self._pick_timer(K.ACTIVITY_ATTEMPT)
        assert row.seq is not None
        return decide.time_out_activity_attempt(s, seq=row.seq, attempt=row.attempt,
                                                options=row.options, leased_at=row.leased_at,
                                                worker="w2", now=self.now())

    def _end_backoff(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        row = self._pick_timer(K.ACTIVITY_RETRY)
        assert row.seq is not None
        return decide.end_activity_backoff(s, seq=row.seq, task_state=row.state, now=self.now())

    def _schedule_to_start(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        row = self._pick_timer(K.ACTIVITY_SCHEDULE_TO_START)
        assert row.seq is not None
        return decide.time_out_activity_schedule_to_start(
            s, seq=row.seq, task_state=row.state, attempt=row.attempt, now=self.now())

    def _schedule_to_close(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        row = self._pick_timer(K.ACTIVITY_SCHEDULE_TO_CLOSE)
        assert row.seq is not None
        worker = "w2" if row.state is fx.TaskState.LEASED else None
        return decide.time_out_activity_schedule_to_close(s, seq=row.seq, attempt=row.attempt,
                                                          worker=worker, now=self.now())


def check(driver: Driver, step: Step) -> None:
    assert isinstance(driver, RowsDriver)
    t = step.transition
    driver.tables.apply(t.effects)
    driver.tables.check(driver.state)
    continued = [e for e in t.events if e.event_type is E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW]
    successors = [e for e in t.effects if isinstance(e, fx.StartSuccessor)]
    assert len(successors) == len(continued)
    if not t.events:  # a retry or a back-off: rows only, and never a new task or timer row
        assert all(isinstance(e, fx.RetryActivity | fx.ReadyActivity) for e in t.effects)


@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_rows_match_the_state_after_every_step(data: st.DataObject) -> None:
    driver = RowsDriver(data.draw)
    driver.tables.check(driver.state)
    driver.run(data.draw(st.integers(0, 60)), check)
