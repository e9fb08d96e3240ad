"""Services for completing an activity from outside its worker (async completion).

An activity that raises ``sdk.CompleteAsync`` hands its completion to other code: the worker
tells the engine (``activity_task_async``), the engine keeps the lease under its token but
owned by no worker (``activity_task_hand_off``), and whoever holds the token completes,
fails or heartbeats it over REST (``POST /api/activities/{task_token}/...``). Those calls are
fenced by the token like a worker's completions (the same services, with no owner check); an
unknown token (no such run) is ``activity_not_found`` (404), a token that is no longer the
activity's live lease (completed, timed out, retried) ``stale_task`` (409). The attempt's
start-to-close and heartbeat timeouts still apply.
"""

from __future__ import annotations

from typing import Any

from dispatch.store import TaskKind, execution_id_from_token, tasks
from schedproject.transactions import atomic
from sdk.protocol.payloads import text_problem
from workflows import store as executions
from workflows.errors import NotFound

from ._write import Outcome
from .tasks import activity_task_complete, activity_task_fail, activity_task_heartbeat, stale


def activity_task_hand_off(*, token: str, worker_id: str) -> None:
    """The worker that holds ``token`` hands the activity's completion to outside code."""
    with atomic():
        locked = tasks.lock_leased_run(token, kind=TaskKind.ACTIVITY, owner=worker_id)
        if locked is None:
            raise stale()
        _, task = locked
        tasks.hand_off(task)


MAX_TOKEN_LENGTH = 64  # dispatch.models.Task.token


def _known(token: str) -> None:
    """``activity_not_found`` unless ``token`` could be a lease token (a token no lease can
    have, e.g. with NUL, never reaches the database) of a run that exists."""
    execution_id = execution_id_from_token(token)
    if (len(token) > MAX_TOKEN_LENGTH or text_problem(token) is not None or execution_id is None
            or not executions.get_many([execution_id])):
        raise NotFound("no activity has that task token", code="activity_not_found")


def activity_complete_by_token(*, token: str, result: Any) -> Outcome:
    _known(token)
    return activity_task_complete(token=token, result=result)


def activity_fail_by_token(*, token: str, failure: dict[str, Any]) -> Outcome | None:
    _known(token)
    return activity_task_fail(token=token, failure=failure)


def activity_heartbeat_by_token(*, token: str, details: Any) -> bool:
    """Record a heartbeat; whether the activity has been asked to cancel."""
    _known(token)
    return activity_task_heartbeat(token=token, details=details)
