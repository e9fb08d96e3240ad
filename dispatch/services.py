"""Services of the dispatcher and the worker consumer: sessions, leases, dispatch ticks.

Built on the stores (``dispatch.store`` for task rows, leases and sessions; the other apps'
stores for the rows a release touches) and on the public API of ``workflows.services`` for
anything that is a transition of a run (starting or timing out a workflow task).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import InterfaceError, OperationalError, transaction

from schedproject import config
from schedproject.config import SchedConfig
from schedproject.transactions import atomic
from sdk import protocol
from timers import store as timers
from workflows import store as executions
from workflows.core.effects import TimerKind
from workflows.models import ApiToken, Execution
from workflows.services import (
    Lessee,
    Outcome,
    stale,
    start_attempt_timers,
    workflow_task_start,
    workflow_task_time_out,
)

from . import metrics
from .deliveries import activity_task_message, history_page
from .engine import ENGINE_ID
from .store import (
    NotLeader,
    Shard,
    Task,
    TaskKind,
    TaskState,
    WorkerSession,
    check_term,
    engines,
    execution_id_from_token,
    leadership,
    sessions,
    tasks,
)

log = logging.getLogger("sched.dispatch")
Delivery = tuple[str, dict[str, Any]]  # (channel name, task message)


def _config() -> SchedConfig:
    return config.get()


# ---- worker sessions -----------------------------------------------------------------------


def capped(credit: int) -> int:
    """A worker's advertised capacity of one kind, within ``SCHED_MAX_WORKER_CREDIT``: a
    worker claiming more cannot take a whole queue from the others."""
    return max(0, min(credit, _config().max_worker_credit))


@dataclass(frozen=True)
class Registered:
    """A worker's new session, and the leases it took over from its last one:
    (token, frame type of the task) of each."""

    session: WorkerSession
    resumed: list[tuple[str, str]]


def worker_register(*, worker_id: str, channel_name: str, engine_id: str, hello: protocol.Hello,
                    now: datetime) -> Registered:
    """Open the worker's session. A worker reconnecting names its last session
    (``hello.resume_worker_id``) and the tokens of the leases it still holds (its running
    activities, the results it could not deliver): those leases move to the new session, so
    its results are accepted and its running activities are not handed to another worker.
    Holding one of them proves the worker is that session's: then the last session is
    dropped and its other leases go back to the queue."""
    resumed: list[tuple[str, str]] = []
    previous = hello.resume_worker_id
    with atomic():
        session = sessions.register(
            worker_id, channel_name=channel_name, engine_id=engine_id,
            identity=hello.identity[:255], task_queue=hello.task_queue,
            workflow_types=sorted(set(hello.workflow_types)),
            activity_types=sorted(set(hello.activity_types)),
            max_workflow_tasks=capped(hello.max_workflow_tasks),
            max_activity_tasks=capped(hello.max_activity_tasks), connected_at=now,
            last_seen_at=now)
        if previous and previous != worker_id:
            until = now + timedelta(seconds=_config().lease_timeout_seconds)
            resumed = [(token, _FRAME_TYPES[kind]) for token, kind in
                       tasks.adopt(previous, worker_id, hello.resume_tokens, until)]
            if resumed:
                sessions.drop(previous)
    if resumed:
        log.info("worker %s took over %d leases of its last session %s", worker_id,
                 len(resumed), previous)
        _release_all(previous, now=now, term=None)
    return Registered(session, resumed)


_FRAME_TYPES = {TaskKind.WORKFLOW.value: "workflow_task", TaskKind.ACTIVITY.value: "activity_task"}


def worker_credit(*, worker_id: str, max_workflow_tasks: int, max_activity_tasks: int,
                  now: datetime) -> None:
    with atomic():
        sessions.credit(worker_id, max_workflow_tasks=capped(max_workflow_tasks),
                        max_activity_tasks=capped(max_activity_tasks), now=now)


@dataclass(frozen=True)
class Heard:
    """A worker socket of this engine, as its session keeper saw it: when the worker was
    last heard from (``None``: not since the last keep), and the tokens of the activity
    leases whose frames reached the socket."""

    worker_id: str
    at: datetime | None
    tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kept:
    present: set[str]  # the worker ids asked about that still have a session
    live_tokens: set[int]  # the token ids asked about that are neither revoked nor deleted


def sessions_keep(*, heard: Sequence[Heard], token_ids: Collection[int]) -> Kept:
    """One round of an engine's session keeper (``dispatch.keeper``), for all its sockets at
    once: record when each worker was last heard from, keep the activity leases that reached
    its socket for a lease timeout from then, and say which sessions and tokens still stand."""
    lease = timedelta(seconds=_config().lease_timeout_seconds)
    with atomic():
        sessions.touch({h.worker_id: h.at for h in heard if h.at is not None})
        tasks.extend_leases({h.worker_id: (h.at + lease, h.tokens) for h in heard
                             if h.at is not None})
        present = sessions.present([h.worker_id for h in heard])
    return Kept(present=present, live_tokens=ApiToken.live_ids(token_ids))


def worker_disconnect(*, worker_id: str, now: datetime, term: int | None = None) -> int:
    """The worker's socket closed: drop its session and hand its tasks back. Returns how many
    tasks went back."""
    with atomic():
        if term is not None:
            check_term("dispatcher", term)
        sessions.drop(worker_id)
    return _release_all(worker_id, now=now, term=term)


def _release_all(worker_id: str, *, now: datetime, term: int | None) -> int:
    """Hand back every lease ``worker_id`` still holds (its session is gone). Each release
    checks the owner again: a lease the worker took over on a new socket meanwhile stays."""
    return _release_each(((task_id, worker_id) for task_id in tasks.leased_by(worker_id)),
                         now=now, term=term)


def release_task(task_id: int, *, now: datetime, owner: str | None = None,
                 term: int | None = None) -> Outcome | None:
    """Hand a leased task back: an activity is ready again with the same input and attempt;
    a started workflow task is timed out and scheduled again."""
    with atomic():
        if term is not None:  # the dispatcher reclaiming: a leader write
            check_term("dispatcher", term)
        execution_id = tasks.execution_of(task_id)
        if execution_id is None:
            return None
        execution = executions.lock(execution_id)
        task = tasks.lock_leased_id(task_id)
        if task is None or (owner is not None and task.lease_owner != owner):
            return None
        if task.kind == TaskKind.WORKFLOW:
            return workflow_task_time_out(execution, task, now)
        timers.delete(execution.pk, (TimerKind.ACTIVITY_ATTEMPT,), task.seq)
        tasks.unlease(task, to=TaskState.READY)
        return None


def reclaim(*, now: datetime, term: int | None = None,
            leading_since: datetime | None = None) -> int:
    """Drop the sessions of dead engines and those not seen for a lease timeout, and hand
    back expired leases. ``leading_since``: when the caller's leadership began."""
    cutoff = now - timedelta(seconds=_config().lease_timeout_seconds)
    count = 0
    for worker_id in _sessions_of_dead_engines(now=now, term=term,
                                               leading_since=leading_since):
        log.warning("worker %s was served by a dead engine; handing its tasks back", worker_id)
        count += worker_disconnect(worker_id=worker_id, now=now, term=term)
    for worker_id in sessions.silent(cutoff):
        log.warning("worker %s went silent; handing its tasks back", worker_id)
        count += worker_disconnect(worker_id=worker_id, now=now, term=term)
    return count + _release_each(tasks.expired(now, 500), now=now, term=term)


def _release_each(leases: Iterable[tuple[int, str | None]], *, now: datetime,
                  term: int | None) -> int:
    """``release_task`` each ``(task id, owner)``; one that fails is logged and counted, and
    the others are handed back all the same. Returns how many went back."""
    count = 0
    for task_id, owner in leases:
        try:
            release_task(task_id, now=now, owner=owner, term=term)
        except (NotLeader, InterfaceError, OperationalError):
            raise  # the loop's trouble, not this task's
        except Exception:
            metrics.item_failed("dispatcher")
            log.exception("could not hand back the lease of task %s", task_id)
            continue
        count += 1
    return count


# ---- engine processes ----------------------------------------------------------------------

HOST = socket.gethostname()


def engine_register(*, now: datetime) -> None:
    """This engine process starts: its row, which it beats while it lives."""
    with atomic():
        engines.register(ENGINE_ID, host=HOST, pid=os.getpid(), now=now)


def engine_beat(*, now: datetime) -> bool:
    """This engine is alive. False if another engine declared it dead (and released its
    workers' sessions): the row is back, and the caller must close its worker sockets."""
    with atomic():
        if engines.beat(ENGINE_ID, now):
            return True
        engines.register(ENGINE_ID, host=HOST, pid=os.getpid(), now=now)
        return False


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is another live process than this one."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def _sessions_of_dead_engines(*, now: datetime, term: int | None,
                              leading_since: datetime | None) -> list[str]:
    """Take the rows of dead engines (fenced by the leader's term); the sessions they
    served. An engine of this host whose process is gone is dead, and any other once it has
    been silent for ``engine_timeout_seconds``; but a leader releases nothing until the
    reconnecting workers had ``resume_grace_seconds`` to reach it, counted from when it
    listens and leads (a restarted engine is slow to answer its first hellos)."""
    cfg = _config()
    started = engines.started_at(ENGINE_ID)
    if started is not None and leading_since is not None:
        started = max(started, leading_since)
    if started is not None and now - started < timedelta(seconds=cfg.resume_grace_seconds):
        return []
    with atomic():
        if term is not None:
            check_term("dispatcher", term)
        dead = engines.take_dead(now, me=ENGINE_ID, host=HOST if started is not None else "",
                                 timeout=cfg.engine_timeout_seconds,
                                 grace=cfg.resume_grace_seconds, pid_alive=_pid_alive)
        for engine_id in dead:
            log.warning("engine %s is dead; releasing the sessions it served", engine_id)
        return sessions.of_engines(dead)


def history_for(*, token: str, worker_id: str, now: datetime,
                first_event_id: int = 1) -> tuple[list[dict[str, Any]], bool]:
    """One page of the history of the run of a workflow task the worker holds, from
    ``first_event_id`` through the task's WorkflowTaskStarted; and whether more follow.
    The workflow task's timeout counts again from each page served: a long history takes
    many pages to fetch, and the worker is making progress."""
    if execution_id_from_token(token) is None:
        raise stale()
    task = tasks.leased_workflow_task(token, worker_id)
    if task is None:
        raise stale()
    execution = task.execution
    started = execution.core_state().workflow_task
    through = started.started_event_id if started and started.started_event_id else 0
    page = history_page(execution, first=max(1, first_event_id), through=through)
    with atomic():
        tasks.extend_lease(token, now + timedelta(
            seconds=_config().workflow_task_timeout_seconds))
    return page


# ---- the dispatch tick ---------------------------------------------------------------------


@dataclass
class _Slot:
    session: WorkerSession
    workflow: int
    activity: int

    def lessee(self) -> Lessee:
        cfg = _config()
        return Lessee(self.session.worker_id, self.session.task_queue,
                      frozenset(self.session.workflow_types),
                      frozenset(self.session.activity_types), 1, 0, cfg.lease_timeout_seconds,
                      cfg.workflow_task_timeout_seconds)


def dispatch_tick(*, now: datetime, term: int, batch: int = 200,
                  shard: Shard = leadership.ONLY) -> list[Delivery]:
    """Lease ready tasks of ``shard``'s runs to live workers with free capacity. Returns the
    messages to send, once this has committed.

    Only tasks some worker with room can take are read (by queue, kind and type), at most as
    many as there are free slots, so a tick costs little when workers are full. With several
    shards, their ticks (on this engine or others) share the workers' credit: each takes the
    dispatch lock for its transaction and reads the free slots under it, so two shards never
    lease the same free slot.

    The tick is one transaction. If it fails for anything but a lost leadership, it is taken
    again with each task in a savepoint of its own: a task whose run's data breaks its lease
    or its message is logged with the run's ids, counted
    (``sched_item_errors_total{loop="dispatcher"}``) and left ready, and the others go out.
    """
    try:
        return _tick(now=now, term=term, batch=batch, shard=shard, isolate=False)
    except NotLeader:
        raise
    except Exception as exc:
        log.warning("dispatch tick failed (%r); leasing its tasks one at a time", exc)
        return _tick(now=now, term=term, batch=batch, shard=shard, isolate=True)


def _tick(*, now: datetime, term: int, batch: int, shard: Shard,
          isolate: bool) -> list[Delivery]:
    slots = _free_slots(now)
    if not _room(slots):
        return []
    with atomic():
        check_term(shard.name, term)
        if shard.count > 1:
            leadership.lock_dispatch()
            slots = _free_slots(now)
            if not _room(slots):
                return []
        return _lease_ready(slots, now, batch, shard, isolate)


def _room(slots: list[_Slot]) -> bool:
    return bool(_wanted(slots)) and sum(s.workflow + s.activity for s in slots) > 0


def _lease_ready(slots: list[_Slot], now: datetime, batch: int,
                 shard: Shard, isolate: bool) -> list[Delivery]:
    wanted = _wanted(slots)
    limit = min(batch, sum(s.workflow + s.activity for s in slots))
    deliveries: list[Delivery] = []
    ready = tasks.ready(wanted, limit, shard=(shard.index, shard.count))
    runs = executions.lock_many_skip_locked(
        [t.execution_id for t in ready if t.kind == TaskKind.WORKFLOW])
    leased_activities: list[Task] = []
    for task in ready:
        if task.kind == TaskKind.ACTIVITY:
            slot = _pick(slots, task, sticky="")
            if slot is not None:
                tasks.lease(task, slot.session.worker_id, now,
                            _config().lease_timeout_seconds)
                slot.activity -= 1
                leased_activities.append(task)
            continue
        execution = runs.get(task.execution_id)
        if execution is None:
            continue  # busy with another transition; next tick
        slot = _pick(slots, task, sticky=execution.sticky_worker)
        if slot is None:
            continue
        deliveries.extend(_item(isolate, execution, task, functools.partial(
            _start_workflow_task, execution, task, slot, now)))
    if leased_activities:
        of = executions.get_many(t.execution_id for t in leased_activities)
        by_worker = {s.session.worker_id: s.session.channel_name for s in slots}
        groups = [[t] for t in leased_activities] if isolate else [leased_activities]
        for group in groups:
            deliveries.extend(_item(isolate, of[group[0].execution_id], group[0],
                                    functools.partial(_deliver_activities, group, of,
                                                      by_worker, now)))
    return deliveries


def _item(isolate: bool, execution: Execution, task: Task,
          step: Callable[[], list[Delivery]]) -> list[Delivery]:
    """``step()``, in a savepoint of its own when ``isolate``: then its failure is logged
    with the run's ids and counted, and it leases nothing."""
    if not isolate:
        return step()
    try:
        with transaction.atomic():
            return step()
    except Exception:
        metrics.item_failed("dispatcher")
        log.exception("dispatcher: could not lease task %s of run %s/%s; it stays ready",
                      task.pk, execution.workflow_id, execution.run_id,
                      extra={"workflow_id": execution.workflow_id,
                             "run_id": str(execution.run_id)})
        return []


def _deliver_activities(leased: list[Task], of: dict[int, Execution], by_worker: dict[str, str],
                        now: datetime) -> list[Delivery]:
    tasks.save_leases(leased)
    start_attempt_timers(leased, now)
    return [(by_worker[task.lease_owner], activity_task_message(of[task.execution_id], task))
            for task in leased]


def _start_workflow_task(execution: Execution, task: Task, slot: _Slot,
                         now: datetime) -> list[Delivery]:
    outcome = workflow_task_start(execution, task, slot.lessee(), now)
    if outcome is None:
        log.warning("dropping orphaned workflow task %s", task.pk)
        return []
    slot.workflow -= 1
    return [(slot.session.channel_name, m) for m in outcome.deliveries]


def _wanted(slots: list[_Slot]) -> list[tasks.Wanted]:
    """Which ready tasks the workers with room can take: by queue, kind and type."""
    wanted: list[tasks.Wanted] = []
    for s in slots:
        for kind, room, types in ((TaskKind.WORKFLOW, s.workflow, s.session.workflow_types),
                                  (TaskKind.ACTIVITY, s.activity, s.session.activity_types)):
            if room > 0 and types:
                wanted.append((s.session.task_queue, kind, types))
    return wanted


def _free_slots(now: datetime) -> list[_Slot]:
    cutoff = now - timedelta(seconds=_config().lease_timeout_seconds)
    live = sessions.live(cutoff)
    if not live:
        return []
    held = tasks.held_counts([s.worker_id for s in live])
    slots = [
        _Slot(s, s.max_workflow_tasks - held[(s.worker_id, TaskKind.WORKFLOW)],
              s.max_activity_tasks - held[(s.worker_id, TaskKind.ACTIVITY)])
        for s in live
    ]
    return [s for s in slots if s.workflow > 0 or s.activity > 0]


def _pick(slots: list[_Slot], task: Task, *, sticky: str) -> _Slot | None:
    """The worker for ``task``: the run's sticky worker if it can take it, else the one with
    the most room among those serving the task's queue and type."""
    workflow = task.kind == TaskKind.WORKFLOW
    eligible = [
        s for s in slots
        if s.session.task_queue == task.task_queue
        and (s.workflow if workflow else s.activity) > 0
        and task.type_name in (s.session.workflow_types if workflow
                               else s.session.activity_types)
    ]
    if not eligible:
        return None
    for s in eligible:
        if sticky and s.session.worker_id == sticky:
            return s
    return max(eligible, key=lambda s: s.workflow if workflow else s.activity)
