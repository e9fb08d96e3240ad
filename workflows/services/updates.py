"""Accepting an update: the one write of a workflow update (``dispatch.updates`` runs the
rest: the validator on a worker before, the wait for the handler's completion after)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from schedproject.transactions import atomic
from workflows import store as executions
from workflows.core import decide
from workflows.errors import Conflict
from workflows.models import Execution

from ._write import write_transition
from .executions import get_run


def workflow_update_accept(*, workflow_id: str, run_id: str | None, update_id: str, name: str,
                           args: list[Any]) -> Execution:
    """Record WorkflowExecutionUpdateAccepted for ``update_id`` (its validator passed) and
    schedule a workflow task for its handler; ``Conflict`` ``run_closed`` if the run closed.
    An update already accepted under ``update_id`` (checked under the run's lock, so two
    callers with one id accept it once) writes nothing."""
    with atomic():
        run = executions.lock(get_run(workflow_id, run_id).pk)
        if executions.update_events(run.pk, update_id):
            return run
        try:
            t = decide.accept_update(run.core_state(), update_id=update_id, name=name,
                                     args=args, now=timezone.now())
        except decide.Rejected as exc:
            raise Conflict(f"workflow {workflow_id!r}: {exc.message}", code=exc.code,
                           status=run.status, run_id=str(run.run_id)) from None
        write_transition(run, t)
        return run
