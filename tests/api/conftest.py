"""API-tier fixtures: a client, and ``engine``, a stand-in for a worker that drives runs
through the real services (so API tests can see runs complete, fail, wait on timers...)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from dispatch.models import Task, TaskKind
from dispatch.store.tasks import lease
from workflows import changes, services
from workflows.core import decide
from workflows.models import Execution
from workflows.services import Lessee, lock_execution, write_transition

WORKER = "test-worker"


class Engine:
    """Plays a worker: takes a run's workflow task and completes or fails it."""

    def open_run(self, workflow_id: str) -> Execution:
        return Execution.objects.get(workflow_id=workflow_id, status="running")

    def take_workflow_task(self, workflow_id: str) -> str:
        """Start the run's scheduled workflow task on WORKER; its lease token."""
        with transaction.atomic():
            run = lock_execution(self.open_run(workflow_id).pk)
            state = run.core_state()
            assert state.workflow_task is not None, "no workflow task scheduled"
            scheduled = state.workflow_task.scheduled_event_id
            t = decide.start_workflow_task(state, scheduled_event_id=scheduled, worker=WORKER,
                                           now=timezone.now())
            write_transition(run, t, lessee=Lessee(
                worker_id=WORKER, task_queue=run.task_queue,
                workflow_types=frozenset({run.workflow_type}), activity_types=frozenset(),
                workflow_slots=1, activity_slots=0, lease_seconds=30,
                workflow_task_timeout_seconds=10))
        return Task.objects.get(execution=run, kind=TaskKind.WORKFLOW,
                                scheduled_event_id=scheduled).token

    def complete_task(self, workflow_id: str, commands: list[dict[str, Any]]) -> None:
        token = self.take_workflow_task(workflow_id)
        services.workflow_task_complete(token=token, commands=commands)

    def complete_workflow(self, workflow_id: str, result: Any = None) -> None:
        self.complete_task(workflow_id, [{"kind": "complete_workflow", "result": result}])

    def fail_task(self, workflow_id: str, message: str = "boom") -> None:
        token = self.take_workflow_task(workflow_id)
        services.workflow_task_fail(token=token, cause="workflow_error",
                                    failure={"type": "RuntimeError", "message": message})

    def lease_activity(self, workflow_id: str, seq: int) -> Task:
        task = Task.objects.get(execution=self.open_run(workflow_id), kind=TaskKind.ACTIVITY,
                                seq=seq)
        lease(task, WORKER, timezone.now(), 30)
        task.save()
        return task


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/api/" in str(item.fspath):
            item.add_marker(pytest.mark.timeout(60))


@pytest.fixture
def run_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The execution ids a long poll re-reads, in order (``Execution.refresh_from_db``), with
    the poller of other processes' commits off, so only a commit's wake-up can cause a read."""
    monkeypatch.setattr(changes, "remote_polling", False)  # no other process here
    reads: list[int] = []
    refresh = Execution.refresh_from_db

    def counting(self: Execution, *args: Any, **kwargs: Any) -> None:
        reads.append(self.pk)
        refresh(self, *args, **kwargs)

    monkeypatch.setattr(Execution, "refresh_from_db", counting)
    return reads
