"""The dispatcher's services: worker sessions, dispatch ticks, hand-offs and lease loss."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from dispatch import services as dispatch
from dispatch.models import Leadership, Task, TaskKind, TaskState, WorkerSession
from dispatch.store import NotLeader, Shard
from schedproject import config
from timers.models import Timer, TimerKind
from workflows import store as executions
from workflows.core.events import EventType
from workflows.errors import Conflict
from workflows.models import ApiToken, Execution, TokenScope
from workflows.services import (
    activity_task_complete,
    workflow_signal,
    workflow_start,
    workflow_start_handing_off,
    workflow_task_complete,
)

from .conftest import (
    QUEUE,
    TERM,
    WORKFLOW,
    Worker,
    activity,
    activity_tasks,
    assert_consistent,
    count_events,
    event_types,
    messages,
    refresh,
    register,
    tick,
    workflow_task,
)

E = EventType
pytestmark = pytest.mark.django_db


def start(workflow_id: str = "wf", task_queue: str = QUEUE) -> Execution:
    return workflow_start(workflow_type=WORKFLOW, task_queue=task_queue, workflow_id=workflow_id)


def wire_ids(msg: dict[str, Any]) -> list[int]:
    return [e["event_id"] for e in msg["events"]]


# ---- sessions and ticks --------------------------------------------------------------------


def test_one_runs_bad_data_leaves_the_tick_to_the_others(worker: Worker) -> None:
    good, bad, other = start("good"), start("bad"), start("other")
    # A row the message builder cannot read (its search attributes are not an object).
    Execution.objects.filter(pk=bad.pk).update(search_attributes=["corrupt"])
    errors = REGISTRY.get_sample_value("sched_item_errors_total", {"loop": "dispatcher"}) or 0
    deliveries = tick()
    assert sorted(m["workflow_id"] for _, m in deliveries) == ["good", "other"]
    assert REGISTRY.get_sample_value("sched_item_errors_total",
                                     {"loop": "dispatcher"}) == errors + 1
    # The bad run's task is untouched, ready for the next tick; the others are started.
    assert Task.objects.get(execution=bad).state == TaskState.READY
    assert event_types(refresh(bad))[-1] is E.WORKFLOW_TASK_SCHEDULED
    for run in (good, other):
        assert event_types(run)[-1] is E.WORKFLOW_TASK_STARTED
        assert_consistent(run)


def test_worker_register_creates_then_updates_its_session(leader: int) -> None:
    register("w1", max_tasks=5)
    register("w1", max_tasks=7)
    [session] = WorkerSession.objects.all()
    assert (session.worker_id, session.channel_name, session.task_queue) == (
        "w1", "chan.w1", QUEUE)
    assert session.max_workflow_tasks == 7
    assert session.workflow_types == [WORKFLOW]
    assert session.activity_types == ["charge", "ship"]


def test_dispatch_sends_ready_tasks_once(worker: Worker) -> None:
    run = start()
    deliveries = tick()
    assert [(ch, m["type"]) for ch, m in deliveries] == [(worker.channel, "workflow_task")]
    msg = deliveries[0][1]
    assert msg["workflow_type"] == WORKFLOW and msg["run_id"] == str(run.run_id)
    assert tick() == []
    task = Task.objects.get(execution=run)
    assert (task.state, task.lease_owner, task.token) == (
        TaskState.LEASED, worker.worker_id, msg["token"])
    assert event_types(run)[-1] is E.WORKFLOW_TASK_STARTED
    assert_consistent(run)


def test_dispatch_with_a_stale_term_is_refused_and_leases_nothing(worker: Worker) -> None:
    run = start()
    Leadership.objects.filter(name="dispatcher").update(term=TERM + 1)  # a new leader
    before = count_events()
    with pytest.raises(NotLeader):
        dispatch.dispatch_tick(now=timezone.now(), term=TERM)
    assert Task.objects.get(execution=run).state == TaskState.READY
    assert count_events() == before
    assert len(dispatch.dispatch_tick(now=timezone.now(), term=TERM + 1)) == 1


def test_dispatch_respects_queue_types_and_capacity(leader: int) -> None:
    register("small", max_tasks=1)
    register("elsewhere", task_queue="other")
    for n in range(3):
        start(f"wf-{n}")
    first = tick()
    assert [ch for ch, _ in first] == ["chan.small"]
    assert tick() == []  # no room left, and the other worker serves another queue
    assert Task.objects.filter(state=TaskState.READY).count() == 2
    run = start("far", task_queue="other")
    [(channel, msg)] = tick()
    assert channel == "chan.elsewhere" and msg["run_id"] == str(run.run_id)


def test_each_dispatch_shard_leases_its_own_runs_and_they_share_the_credit(
        leader: int) -> None:
    register("w1", max_tasks=3)
    runs = [start(f"sharded-{n}") for n in range(4)]
    shards = [Shard(i, 2) for i in range(2)]
    for shard in shards:
        Leadership.objects.get_or_create(name=shard.name, defaults={"term": TERM,
                                                                    "holder": "test"})
    leased: dict[int, list[str]] = {}
    for shard in shards:
        deliveries = dispatch.dispatch_tick(now=timezone.now(), term=TERM, shard=shard)
        leased[shard.index] = sorted(m["run_id"] for _, m in deliveries)
    by_shard = {i: sorted(str(r.run_id) for r in runs if r.pk % 2 == i) for i in (0, 1)}
    # Shard 0 goes first and fills what its runs need; shard 1 gets the rest of the credit.
    assert leased[0] == by_shard[0]
    assert len(leased[1]) == 3 - len(by_shard[0])
    assert set(leased[1]) <= set(by_shard[1])
    assert Task.objects.filter(state=TaskState.LEASED).count() == 3  # never past the credit
    for run in runs:
        assert_consistent(run)


def test_a_shard_with_a_stale_term_is_refused(leader: int) -> None:
    register("w1")
    start()
    shard = Shard(1, 2)
    Leadership.objects.create(name=shard.name, term=TERM + 1, holder="other")
    with pytest.raises(NotLeader):
        dispatch.dispatch_tick(now=timezone.now(), term=TERM, shard=shard)


def test_no_live_worker_no_delivery(leader: int) -> None:
    register("old", now=timezone.now() - timedelta(minutes=5))
    start()
    assert tick() == []


def test_the_keeper_keeps_only_the_activity_leases_that_reached_the_socket(
        worker: Worker) -> None:
    run = start()
    workflow_task_complete(token=workflow_task(run)["token"], commands=[activity(1), activity(2)])
    reached, lost = (m["token"] for m in activity_tasks(run))
    later = timezone.now() + timedelta(seconds=2 * config.get().lease_timeout_seconds)
    kept = dispatch.sessions_keep(heard=[dispatch.Heard(worker.worker_id, later, (reached,)),
                                         dispatch.Heard("nobody", later)], token_ids=[])
    assert kept.present == {worker.worker_id}
    assert WorkerSession.objects.get(worker_id=worker.worker_id).last_seen_at == later
    expiry = {t.token: t.lease_expires_at or later
              for t in Task.objects.filter(execution=run, kind=TaskKind.ACTIVITY)}
    assert expiry[reached] > later  # kept for a lease timeout from when the worker spoke
    assert expiry[lost] < later  # its frame never arrived: it runs out on its own


def test_the_keeper_never_brings_an_expiry_forward(worker: Worker) -> None:
    run = start()
    workflow_task_complete(token=workflow_task(run)["token"], commands=[activity(1)])
    [message] = activity_tasks(run)
    before = Task.objects.get(token=message["token"]).lease_expires_at
    earlier = timezone.now() - timedelta(seconds=20)
    dispatch.sessions_keep(heard=[dispatch.Heard(worker.worker_id, earlier,
                                                 (message["token"],))], token_ids=[])
    assert Task.objects.get(token=message["token"]).lease_expires_at == before


def test_the_keeper_says_which_tokens_are_still_live(db: None) -> None:
    live, _ = ApiToken.issue("live", scope=TokenScope.WORKER)
    revoked, _ = ApiToken.issue("revoked", scope=TokenScope.WORKER)
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    kept = dispatch.sessions_keep(heard=[], token_ids=[live.pk, revoked.pk, 999999])
    assert kept.live_tokens == {live.pk}


def test_advertised_capacity_is_capped(leader: int, settings: Any) -> None:
    settings.SCHED = replace(settings.SCHED, max_worker_credit=3)
    register("greedy", max_tasks=10**6)
    session = WorkerSession.objects.get(worker_id="greedy")
    assert (session.max_workflow_tasks, session.max_activity_tasks) == (3, 3)
    dispatch.worker_credit(worker_id="greedy", max_workflow_tasks=10**9, max_activity_tasks=2,
                           now=timezone.now())
    session.refresh_from_db()
    assert (session.max_workflow_tasks, session.max_activity_tasks) == (3, 2)
    for n in range(5):
        start(f"wf-{n}")
    assert len(tick()) == 3


def test_history_for_a_held_workflow_task(worker: Worker) -> None:
    run = start()
    msg = workflow_task(run)
    events, more = dispatch.history_for(token=msg["token"], worker_id=worker.worker_id,
                                        now=timezone.now())
    assert [e["event_id"] for e in events] == [1, 2, 3] and not more
    rest, more = dispatch.history_for(token=msg["token"], worker_id=worker.worker_id,
                                      now=timezone.now(), first_event_id=3)
    assert [e["event_id"] for e in rest] == [3] and not more
    # Each page served counts the workflow task's timeout again.
    later = timezone.now() + timedelta(seconds=60)
    dispatch.history_for(token=msg["token"], worker_id=worker.worker_id, now=later)
    expires = Task.objects.get(token=msg["token"]).lease_expires_at
    assert expires is not None and expires > later
    with pytest.raises(Conflict):
        dispatch.history_for(token=msg["token"], worker_id="w-other", now=timezone.now())


# ---- direct hand-off -----------------------------------------------------------------------


def test_sticky_worker_gets_the_next_workflow_task_with_only_new_events(worker: Worker) -> None:
    run = start()
    msg = workflow_task(run)
    assert msg["first_event_id"] == 1
    outcome = workflow_task_complete(token=msg["token"], commands=[activity(1)],
                                     worker_id=worker.worker_id, lessee=worker.lessee())
    [act] = outcome.deliveries  # the activity comes straight back, no dispatcher involved
    assert act["type"] == "activity_task" and act["activity_type"] == "charge"
    assert Task.objects.get(execution=run, kind=TaskKind.ACTIVITY).state == TaskState.LEASED
    outcome = activity_task_complete(token=act["token"], result=5, worker_id=worker.worker_id,
                                     lessee=worker.lessee())
    [wt] = outcome.deliveries
    assert wt["type"] == "workflow_task"
    assert wt["first_event_id"] == 4 > 1
    assert wire_ids(wt) == list(range(4, refresh(run).next_event_id))
    assert [e["event_type"] for e in wt["events"]] == [
        "WorkflowTaskCompleted", "ActivityTaskScheduled", "ActivityTaskStarted",
        "ActivityTaskCompleted", "WorkflowTaskScheduled", "WorkflowTaskStarted"]
    assert tick() == []  # already leased
    # The next hand-off starts where this one ended.
    outcome = workflow_task_complete(token=wt["token"], commands=[activity(2)],
                                     worker_id=worker.worker_id, lessee=worker.lessee())
    [act2] = outcome.deliveries
    outcome = activity_task_complete(token=act2["token"], result=None,
                                     worker_id=worker.worker_id, lessee=worker.lessee())
    [wt2] = outcome.deliveries
    assert wt2["first_event_id"] == wire_ids(wt)[-1] + 1
    assert_consistent(run)


def test_sticky_events_kept_in_memory_are_those_the_table_holds(
        worker: Worker, django_capture_on_commit_callbacks: Any) -> None:
    """The events since a sticky worker's last task come from what this process appended
    (once committed) when it holds them all, and are then the same as the table's."""
    run = start()
    msg = workflow_task(run)
    sent: list[dict[str, Any]] = []
    for seq in (1, 2):
        with django_capture_on_commit_callbacks(execute=True):
            outcome = workflow_task_complete(token=msg["token"], commands=[activity(seq)],
                                             worker_id=worker.worker_id,
                                             lessee=worker.lessee())
        [act] = outcome.deliveries
        with django_capture_on_commit_callbacks(execute=True):
            outcome = activity_task_complete(token=act["token"], result=seq,
                                             worker_id=worker.worker_id,
                                             lessee=worker.lessee())
        [msg] = outcome.deliveries
        sent.append(msg)
    for m in sent:
        first, last = m["first_event_id"], m["events"][-1]["event_id"]
        with mock.patch.object(executions, "_recalled", return_value=None):  # the table's
            from_table = executions.history(run, first, last + 1)
        assert m["events"] == from_table
        assert executions._recalled(run.run_id, first, last + 1) is not None  # memory had them
    assert_consistent(run)


def test_a_worker_that_is_not_sticky_gets_no_workflow_task_handed_off(worker: Worker) -> None:
    other = register("w2")
    run = start()
    msg = workflow_task(run)
    assert messages(tick(), "workflow_task") == []
    holder = worker if msg["token"] in {t.token for t in Task.objects.filter(
        lease_owner=worker.worker_id)} else other
    stranger = other if holder is worker else worker
    workflow_task_complete(token=msg["token"], commands=[activity(1, "ship")])
    [act] = activity_tasks(run)
    owner = Task.objects.get(execution=run, kind=TaskKind.ACTIVITY).lease_owner
    completer = holder if owner == holder.worker_id else stranger
    if completer is holder:  # make the activity's worker the one not caching the run
        dispatch.release_task(Task.objects.get(token=act["token"]).pk, now=timezone.now())
        dispatch.worker_disconnect(worker_id=holder.worker_id, now=timezone.now())
        [act] = activity_tasks(run)
        register(holder.worker_id)
        completer = stranger
    outcome = activity_task_complete(token=act["token"], result=None,
                                     worker_id=completer.worker_id,
                                     lessee=completer.lessee())
    assert outcome.deliveries == []
    assert Task.objects.get(execution=run, kind=TaskKind.WORKFLOW).state == TaskState.READY
    # The dispatcher prefers the sticky worker, which gets only the new events...
    [(channel, wt)] = tick()
    assert channel == holder.channel and wt["first_event_id"] == 4
    # ...and a worker without the run cached gets the whole history.
    dispatch.worker_disconnect(worker_id=holder.worker_id, now=timezone.now())
    [(channel, wt)] = tick()
    assert channel == completer.channel
    assert wt["first_event_id"] == 1 and wire_ids(wt)[0] == 1
    assert wire_ids(wt) == list(range(1, refresh(run).next_event_id))
    assert_consistent(run)


def test_a_lessee_without_room_gets_nothing(worker: Worker) -> None:
    run = start()
    msg = workflow_task(run)
    outcome = workflow_task_complete(token=msg["token"], commands=[activity(1), activity(2)],
                                     lessee=worker.lessee(activity_slots=1))
    assert [m["activity_id"] for m in outcome.deliveries] == ["1"]
    states = dict(Task.objects.filter(execution=run, kind=TaskKind.ACTIVITY)
                  .values_list("seq", "state"))
    assert states == {1: TaskState.LEASED, 2: TaskState.READY}


def test_the_sticky_worker_gets_its_run_back_with_every_workflow_slot_held(
        worker: Worker) -> None:
    run = start()
    msg = workflow_task(run)
    outcome = workflow_task_complete(token=msg["token"], commands=[activity(1)],
                                     worker_id=worker.worker_id,
                                     lessee=worker.lessee(workflow_slots=0))
    [act] = outcome.deliveries
    # The worker's workflow slots are all held (by other runs): credit bounds new runs, not
    # the run it caches, so the run's next workflow task still comes straight back.
    outcome = activity_task_complete(token=act["token"], result=5, worker_id=worker.worker_id,
                                     lessee=worker.lessee(workflow_slots=0))
    [wt] = outcome.deliveries
    assert wt["type"] == "workflow_task" and wt["first_event_id"] == 4
    outcome = workflow_task_complete(token=wt["token"], commands=[activity(2)],
                                     worker_id=worker.worker_id,
                                     lessee=worker.lessee(workflow_slots=0))
    assert [m["type"] for m in outcome.deliveries] == ["activity_task"]
    assert tick() == []
    assert_consistent(run)


def test_a_start_hands_the_first_workflow_task_to_a_lessee_with_a_free_slot(
        worker: Worker) -> None:
    outcome = workflow_start_handing_off(workflow_type=WORKFLOW, task_queue=QUEUE,
                                         workflow_id="wf", lessee=worker.lessee())
    [wt] = outcome.deliveries
    run = outcome.execution
    assert wt["type"] == "workflow_task" and wt["first_event_id"] == 1
    assert [e["event_type"] for e in wt["events"]] == [
        "WorkflowExecutionStarted", "WorkflowTaskScheduled", "WorkflowTaskStarted"]
    task = Task.objects.get(execution=run, kind=TaskKind.WORKFLOW)
    assert task.state == TaskState.LEASED and task.lease_owner == worker.worker_id
    assert tick() == []  # nothing left for the dispatcher
    # The worker now caches the run: its completion is sticky as after a dispatcher lease.
    outcome = workflow_task_complete(token=wt["token"], commands=[activity(1)],
                                     worker_id=worker.worker_id, lessee=worker.lessee())
    assert [m["type"] for m in outcome.deliveries] == ["activity_task"]
    assert_consistent(run)


@pytest.mark.parametrize("lessee", ["no_slot", "other_queue", "other_type"])
def test_a_start_without_a_fitting_lessee_leaves_the_task_to_the_dispatcher(
        worker: Worker, lessee: str) -> None:
    offer = {"no_slot": worker.lessee(workflow_slots=0),
             "other_queue": Worker(worker.worker_id, worker.channel, "elsewhere").lessee(),
             "other_type": worker.lessee()}[lessee]
    outcome = workflow_start_handing_off(
        workflow_type="Other" if lessee == "other_type" else WORKFLOW, task_queue=QUEUE,
        workflow_id="wf", lessee=offer)
    assert outcome.deliveries == []
    run = outcome.execution
    assert Task.objects.get(execution=run, kind=TaskKind.WORKFLOW).state == TaskState.READY
    if lessee != "other_type":
        assert messages(tick(), "workflow_task") != []
    assert_consistent(run)


def test_signal_during_a_sticky_task_is_handed_back_at_once(worker: Worker) -> None:
    run = start()
    msg = workflow_task(run)
    workflow_signal(workflow_id="wf", name="go")
    outcome = workflow_task_complete(token=msg["token"], commands=[],
                                     worker_id=worker.worker_id, lessee=worker.lessee())
    [wt] = outcome.deliveries
    assert wt["first_event_id"] == 4
    assert [e["event_type"] for e in wt["events"]] == [
        "WorkflowExecutionSignaled", "WorkflowTaskCompleted", "WorkflowTaskScheduled",
        "WorkflowTaskStarted"]
    assert_consistent(run)


# ---- lease loss ----------------------------------------------------------------------------


def test_disconnect_hands_back_activities_and_times_out_workflow_tasks(worker: Worker) -> None:
    run_a = start("a")
    run_b = start("b")
    first = tick()
    [msg_a] = messages(first, "workflow_task", run_a)
    [msg_b] = messages(first, "workflow_task", run_b)
    workflow_task_complete(token=msg_a["token"],
                           commands=[activity(1, start_to_close_ms=10_000)])
    [act] = activity_tasks(run_a)
    assert Timer.objects.filter(execution=run_a, kind=TimerKind.ACTIVITY_ATTEMPT).exists()
    assert dispatch.worker_disconnect(worker_id=worker.worker_id, now=timezone.now()) == 2
    assert not WorkerSession.objects.filter(worker_id=worker.worker_id).exists()
    task = Task.objects.get(execution=run_a, kind=TaskKind.ACTIVITY)
    assert (task.state, task.attempt, task.input, task.token, task.lease_owner) == (
        TaskState.READY, 1, {"seq": 1}, "", "")
    assert not Timer.objects.filter(execution=run_a, kind=TimerKind.ACTIVITY_ATTEMPT).exists()
    assert event_types(run_b)[-2:] == [E.WORKFLOW_TASK_TIMED_OUT, E.WORKFLOW_TASK_SCHEDULED]
    assert refresh(run_b).sticky_worker == ""
    before = count_events()
    for token in (act["token"], msg_b["token"]):
        with pytest.raises(Conflict):
            activity_task_complete(token=token, result=None)
        with pytest.raises(Conflict):
            workflow_task_complete(token=token, commands=[])
    assert count_events() == before
    assert_consistent(run_a)
    assert_consistent(run_b)
    # Back on a new session: the same attempt and input, the retried workflow task in full.
    w2 = register("w2")
    deliveries = tick()
    [again] = messages(deliveries, "activity_task")
    assert (again["attempt"], again["input"]) == (1, {"seq": 1})
    [wt] = messages(deliveries, "workflow_task", run_b)
    assert wt["attempt"] == 2 and wt["first_event_id"] == 1
    assert {ch for ch, _ in deliveries} == {w2.channel}


def test_release_task_only_by_its_owner_and_only_once(worker: Worker) -> None:
    run = start()
    workflow_task(run)
    task = Task.objects.get(execution=run)
    assert dispatch.release_task(task.pk, now=timezone.now(), owner="someone-else") is None
    assert Task.objects.get(pk=task.pk).state == TaskState.LEASED
    outcome = dispatch.release_task(task.pk, now=timezone.now(), owner=worker.worker_id)
    assert outcome is not None
    assert [e.event_type for e in outcome.events] == [E.WORKFLOW_TASK_TIMED_OUT,
                                                     E.WORKFLOW_TASK_SCHEDULED]
    assert dispatch.release_task(task.pk, now=timezone.now()) is None  # gone already
    new = Task.objects.get(execution=run)
    assert dispatch.release_task(new.pk, now=timezone.now()) is None  # ready, not leased
    assert_consistent(run)


def test_reclaim_drops_silent_workers_and_expired_leases(leader: int) -> None:
    now = timezone.now()
    alive = register("alive", now=now)
    run = start()
    msg = workflow_task(run)
    workflow_task_complete(token=msg["token"], commands=[activity(1)])
    activity_tasks(run)
    Task.objects.filter(kind=TaskKind.ACTIVITY).update(lease_expires_at=now)
    assert dispatch.reclaim(now=now + timedelta(seconds=1)) == 1  # the lease expired
    assert WorkerSession.objects.filter(worker_id=alive.worker_id).exists()
    task = Task.objects.get(execution=run, kind=TaskKind.ACTIVITY)
    assert (task.state, task.attempt) == (TaskState.READY, 1)
    activity_tasks(run)
    # Silent for longer than the lease timeout: the session goes and its tasks go back.
    assert dispatch.reclaim(now=now + timedelta(minutes=5)) == 1
    assert not WorkerSession.objects.exists()
    assert Task.objects.get(execution=run, kind=TaskKind.ACTIVITY).state == TaskState.READY
    assert_consistent(run)
