"""The engine's metrics after a known workload, driven through the services (a real DB).

The observers run after commit, so these tests commit (``transaction=True``). Counters are
per process and other tests move them too: each test compares values before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from dispatch.leader import LeaderElection
from dispatch.models import Leadership
from timers.manager import fire_due
from timers.models import Timer, TimerKind
from workflows import metrics as workflow_metrics
from workflows.models import Execution
from workflows.services import (
    activity_task_complete,
    activity_task_fail,
    workflow_start,
    workflow_task_complete,
    workflow_terminate,
)

from ..services.conftest import QUEUE, WORKFLOW, activity, activity_tasks, register, workflow_task

pytestmark = pytest.mark.django_db(transaction=True)
TERM = 1


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Sample values now, to compare with later ones."""

    def __init__(self, samples: list[tuple[str, dict[str, str]]]) -> None:
        self.before = {(name, tuple(sorted(labels.items()))): value(name, **labels)
                       for name, labels in samples}

    def __call__(self) -> dict[str, float]:
        out = {}
        for (name, labels), before in self.before.items():
            key = name + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"
            out[key] = value(name, **dict(labels)) - before
        return out


@pytest.fixture(autouse=True)
def _fresh_label_bounds() -> Iterator[None]:
    """Other tests (in this process) start runs of many types: each test here starts with
    the label bounds empty, so its own types are the first seen."""
    for label in (workflow_metrics.WORKFLOW_TYPE, workflow_metrics.TASK_QUEUE,
                  workflow_metrics.ACTIVITY_TYPE):
        label.clear()
    yield


@pytest.fixture
def leaders(transactional_db: None) -> None:
    for name in ("dispatcher", "timers"):
        Leadership.objects.create(name=name, term=TERM, holder="test")


def start(workflow_id: str) -> Execution:
    return workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, input=None,
                          workflow_id=workflow_id)


def complete(run: Execution, commands: list[dict[str, Any]]) -> None:
    msg = workflow_task(run)
    workflow_task_complete(token=msg["token"], commands=commands, worker_id="w1")


def test_metric_values_after_a_known_workload(leaders: None) -> None:
    register("w1")
    wt, act = {"kind": "workflow", "task_queue": QUEUE}, {"kind": "activity", "task_queue": QUEUE}
    delta = Delta([
        ("sched_workflows_started_total", {"workflow_type": WORKFLOW}),
        ("sched_workflows_closed_total", {"workflow_type": WORKFLOW, "status": "completed"}),
        ("sched_workflows_closed_total", {"workflow_type": WORKFLOW, "status": "failed"}),
        ("sched_workflows_closed_total", {"workflow_type": WORKFLOW, "status": "terminated"}),
        ("sched_activities_closed_total", {"status": "completed"}),
        ("sched_activity_retries_total", {"task_queue": QUEUE, "activity_type": "charge"}),
        ("sched_schedule_to_start_seconds_count", wt),
        ("sched_schedule_to_start_seconds_count", act),
        ("sched_workflow_task_seconds_count", {"workflow_type": WORKFLOW}),
        ("sched_timer_lateness_seconds_count", {"kind": TimerKind.ACTIVITY_RETRY}),
        ("sched_timer_lateness_seconds_sum", {"kind": TimerKind.ACTIVITY_RETRY}),
    ])

    # Run A: an activity that fails once, is retried after its back-off, then completes.
    a = start("a")
    complete(a, [activity(1, retry_policy={"maximum_attempts": 3, "initial_interval_ms": 100})])
    [attempt] = activity_tasks(a)
    activity_task_fail(token=attempt["token"], failure={"type": "IOError"}, worker_id="w1")
    [retry] = Timer.objects.filter(execution=a, kind=TimerKind.ACTIVITY_RETRY)
    fired, _ = fire_due(term=TERM, clock=lambda: retry.fire_at + timedelta(seconds=0.5))
    assert fired == 1
    [attempt] = activity_tasks(a)
    assert attempt["attempt"] == 2
    activity_task_complete(token=attempt["token"], result=1, worker_id="w1")
    complete(a, [{"kind": "complete_workflow", "result": "ok"}])
    # Run B fails; run C is terminated before any worker saw it.
    b = start("b")
    complete(b, [{"kind": "fail_workflow", "failure": {"type": "Boom", "message": "no"}}])
    start("c")
    workflow_terminate(workflow_id="c", reason="test")

    assert delta() == {
        f"sched_workflows_started_total{{workflow_type={WORKFLOW}}}": 3,
        f"sched_workflows_closed_total{{status=completed,workflow_type={WORKFLOW}}}": 1,
        f"sched_workflows_closed_total{{status=failed,workflow_type={WORKFLOW}}}": 1,
        f"sched_workflows_closed_total{{status=terminated,workflow_type={WORKFLOW}}}": 1,
        "sched_activities_closed_total{status=completed}": 1,
        f"sched_activity_retries_total{{activity_type=charge,task_queue={QUEUE}}}": 1,
        f"sched_schedule_to_start_seconds_count{{kind=workflow,task_queue={QUEUE}}}": 3,
        f"sched_schedule_to_start_seconds_count{{kind=activity,task_queue={QUEUE}}}": 2,
        f"sched_workflow_task_seconds_count{{workflow_type={WORKFLOW}}}": 3,
        "sched_timer_lateness_seconds_count{kind=activity_retry}": 1,
        "sched_timer_lateness_seconds_sum{kind=activity_retry}": pytest.approx(0.5),
    }


def test_workflow_task_latency_when_the_task_started_in_another_engine(leaders: None) -> None:
    register("w1")
    run = start("elsewhere")
    msg = workflow_task(run)
    # As if another process had leased it:
    workflow_metrics._started = workflow_metrics._StartedTimes()
    before = value("sched_workflow_task_seconds_count", workflow_type=WORKFLOW)
    workflow_task_complete(token=msg["token"], commands=[{"kind": "complete_workflow"}],
                           worker_id="w1")
    assert value("sched_workflow_task_seconds_count", workflow_type=WORKFLOW) == before + 1


def test_ready_tasks_and_connected_workers_are_read_at_scrape_time(leaders: None) -> None:
    assert value("sched_tasks_ready", task_queue=QUEUE, kind="workflow") == 0
    for n in range(3):
        start(f"r{n}")
    register("w1")
    register("w2")
    register("w3", task_queue="other")
    assert value("sched_tasks_ready", task_queue=QUEUE, kind="workflow") == 3
    assert value("sched_workers_connected", task_queue=QUEUE) == 2
    assert value("sched_workers_connected", task_queue="other") == 1
    workflow_task(Execution.objects.get(workflow_id="r0"))  # a tick leases all three
    assert value("sched_tasks_ready", task_queue=QUEUE, kind="workflow") == 0


def test_leader_gauge_follows_the_election(leaders: None) -> None:
    seen: list[float] = []

    async def elect() -> None:
        leading = asyncio.Event()

        async def loop(term: int) -> None:
            seen.append(value("sched_leader", loop="metrics-test"))
            leading.set()
            await asyncio.sleep(3600)

        # SQLite: the file lock; PostgreSQL: the advisory lock.
        election = asyncio.create_task(LeaderElection("metrics-test", "dispatch", loop).run())
        await asyncio.wait_for(leading.wait(), timeout=15)
        election.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await election

    assert value("sched_leader", loop="metrics-test") == 0
    asyncio.run(elect())
    assert seen == [1]
    assert value("sched_leader", loop="metrics-test") == 0


def test_metrics_endpoint_needs_no_token_and_lists_engine_and_http_metrics(
        leaders: None) -> None:
    start("scraped")
    Client().get("/healthz")
    response = Client().get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    for name in ("sched_workflows_started", "sched_tasks_ready", "sched_workers_connected",
                 "sched_schedule_to_start_seconds", "sched_leader",
                 "django_http_requests_total_by_view_transport_method"):
        assert name in families, name
    ready = {"task_queue": QUEUE, "kind": "workflow"}
    assert [s.value for s in families["sched_tasks_ready"].samples if s.labels == ready] == [1]


def test_user_chosen_labels_are_bounded_and_the_rest_is_other(leaders: None,
                                                              settings: Any) -> None:
    """3 label values kept, then ``other``: 10 workflow types (and 10 task queues) make 4
    series of each metric, not 10; the database gauges aggregate the same way."""
    settings.SCHED = dataclasses.replace(settings.SCHED, metrics_label_values=3)
    other = Delta([("sched_workflows_started_total", {"workflow_type": "other"}),
                   ("sched_workflows_closed_total",
                    {"workflow_type": "other", "status": "terminated"})])
    for n in range(10):
        workflow_start(workflow_type=f"bounded-type-{n}", task_queue=f"bounded-queue-{n}",
                       input=None, workflow_id=f"b{n}")
        workflow_terminate(workflow_id=f"b{n}")
    assert other() == {"sched_workflows_started_total{workflow_type=other}": 7,
                       "sched_workflows_closed_total{status=terminated,workflow_type=other}": 7}
    families = {f.name: f for f in REGISTRY.collect()}
    started = {s.labels["workflow_type"] for s in families["sched_workflows_started"].samples
               if s.labels.get("workflow_type", "").startswith("bounded-type-")}
    assert started == {"bounded-type-0", "bounded-type-1", "bounded-type-2"}
    for n in range(10):
        workflow_start(workflow_type=WORKFLOW, task_queue=f"bounded-queue-{n}", input=None,
                       workflow_id=f"q{n}")
    ready = {f.name: f for f in REGISTRY.collect()}["sched_tasks_ready"]
    queues = {s.labels["task_queue"]: s.value for s in ready.samples}
    assert queues == {"bounded-queue-0": 1, "bounded-queue-1": 1, "bounded-queue-2": 1,
                      "other": 7}
