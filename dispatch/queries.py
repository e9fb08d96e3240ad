"""Queries: ask a worker serving a run's workflow type to answer from the run's state.

A query writes nothing: no event, no task row, no change to the execution. Its way:

1. ``query_target`` reads the run (the REST view, in its thread): ``NotFound`` if none.
2. ``ask`` (a coroutine: it holds no thread while it waits) picks a connected worker serving
   the run's task queue and type, the run's sticky worker first (it caches the run), else
   the oldest connection, from the worker session rows: so a worker connected to any engine
   process is found. With none, it looks again every ``POLL_SECONDS`` for
   ``SCHED_QUERY_WORKER_WAIT_SECONDS``, then gives up with 504 ``no_worker``.
3. It sends that worker's consumer, over the channel layer (Redis between engines), a
   ``query.deliver`` event: the ``query_task`` frame to forward, the token, and a reply
   channel of its own (``REPLY_PREFIX``). The frame carries the history's first
   page (none for the sticky worker, which likely caches the run); the consumer serves the
   rest to that socket's ``history_request`` frames under the query's token, and only then.
4. The worker's ``query_result`` goes back on the reply channel as ``query.answer`` (the frame
   as text: a result may hold integers msgpack cannot carry). A worker that is gone, or does
   not serve the type after all, makes ``ask`` try the next one; no answer within
   ``SCHED_QUERY_TIMEOUT_SECONDS`` is a 504 ``query_timeout``.

Rejected: answering from the engine's snapshot of the run (the state a query reads is the
workflow code's own), and a task row per query (a query must write nothing, and is not
worth a durable retry: its caller is waiting and can ask again).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from schedproject import config
from sdk import protocol
from workflows.errors import NotFound, SchedError
from workflows.models import Execution
from workflows.services import get_run

from .deliveries import history_page
from .store import sessions

DELIVER = "query.deliver"
ANSWER = "query.answer"
POLL_SECONDS = 0.25
TOKEN_PREFIX = "q."
# The reply channel of one query: a plain channel (not ``new_channel()``'s process-local
# one), received from by that query alone. A late answer (the query gave up) waits there
# until the channel layer expires it, instead of piling up in the process's shared buffer
# of local channels, and no lock is shared with the worker sockets' receives.
REPLY_PREFIX = "query.reply."
# Answers a consumer gives for the worker (never sent by one): try the next worker.
WORKER_GONE = "worker_gone"
_RETRY_ELSEWHERE = frozenset({WORKER_GONE, "unknown_workflow_type"})
# An update's validation asked of a run that has not run yet: ask again a little later.
NOT_RUN_YET = "not_run_yet"


class NoWorker(SchedError):
    code = "no_worker"
    http_status = 504


class QueryTimeout(SchedError):
    code = "query_timeout"
    http_status = 504


class QueryNotFound(NotFound):
    code = "query_not_found"


class QueryFailed(SchedError):
    code = "query_failed"
    http_status = 422


@dataclass(frozen=True)
class Target:
    """The run a query asks, as read when it arrived."""

    execution_id: int
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    history_length: int
    sticky_worker: str
    sticky_next_event_id: int


def query_target(*, workflow_id: str, run_id: str | None = None) -> Target:
    """The run ``run_id`` of ``workflow_id`` (default its latest); ``NotFound`` if none."""
    run = get_run(workflow_id, run_id)
    return Target(run.pk, run.workflow_id, str(run.run_id), run.workflow_type, run.task_queue,
                  run.next_event_id - 1, run.sticky_worker, run.sticky_next_event_id)


def workers_for(target: Target) -> list[tuple[str, str]]:
    """``(worker_id, channel_name)`` of the live workers that serve the run, sticky first."""
    cutoff = timezone.now() - timedelta(seconds=config.get().lease_timeout_seconds)
    found = sessions.serving(target.task_queue, target.workflow_type, cutoff)
    found.sort(key=lambda w: w[0] != target.sticky_worker)
    return found


def history_of(execution_id: int, *, first: int, through: int) -> tuple[list[Any], bool]:
    """One ``history`` frame's worth of the run's events, ``first`` through ``through``."""
    try:
        execution = Execution.objects.only("run_id").get(pk=execution_id)
    except Execution.DoesNotExist:
        return [], False
    return history_page(execution, first=max(1, first), through=through)


T = TypeVar("T")
RunDb = Callable[..., Awaitable[Any]]  # run_db(fn, *args, **kwargs): fn's value, off the loop


async def in_request_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """The default ``run_db``: from a request's thread (the view's ``async_to_sync``), back
    on that thread, with its database connection, which Django closes at the request's end."""
    value: T = await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
    return value


def deliver_event(frame: protocol.QueryTask, *, reply: str, target: Target) -> dict[str, Any]:
    """The channel-layer event that hands a worker's consumer one query."""
    return {"type": DELIVER, "token": frame.token, "reply": reply,
            "execution_id": target.execution_id, "through": target.history_length,
            "text": frame.encode()}


def answer_event(result: protocol.QueryResult) -> dict[str, Any]:
    """The channel-layer event that carries a worker's answer back to the asking engine."""
    return {"type": ANSWER, "text": result.encode()}


async def send_answer(reply: str, result: protocol.QueryResult) -> None:
    layer = get_channel_layer()
    assert layer is not None
    await layer.send(reply, answer_event(result))


async def ask(target: Target, *, name: str, args: list[Any],
              run_db: RunDb = in_request_thread, update_validation: bool = False,
              errors: Mapping[str, Callable[[str], SchedError]] | None = None) -> Any:
    """The result of query ``name(*args)`` of the run, from a worker; raises ``NoWorker``,
    ``QueryTimeout``, ``QueryNotFound`` or ``QueryFailed``. Its reads of the worker sessions
    and of the history run through ``run_db``; it holds no thread while it waits.

    ``update_validation``: ask the worker to run the validator of the update handler
    ``name`` instead (``dispatch.updates``); a run none of whose workflow tasks has
    completed yet is asked again until one has. ``errors``: the exception to raise for an
    answer's error code, before the query's own."""
    cfg = config.get()
    loop = asyncio.get_running_loop()
    started = loop.time()
    worker_deadline = started + cfg.query_worker_wait_seconds
    deadline = started + cfg.query_timeout_seconds
    layer = get_channel_layer()
    assert layer is not None
    tried: set[str] = set()
    while True:
        workers = [w for w in await run_db(workers_for, target) if w[0] not in tried]
        if not workers:
            if loop.time() >= min(worker_deadline, deadline):
                raise NoWorker(
                    f"no connected worker serves workflow type {target.workflow_type!r} on "
                    f"task queue {target.task_queue!r}" + (" (those tried could not answer)"
                                                            if tried else ""),
                    workflow_type=target.workflow_type, task_queue=target.task_queue)
            await asyncio.sleep(POLL_SECONDS)
            continue
        worker_id, channel = workers[0]
        tried.add(worker_id)
        sticky = worker_id == target.sticky_worker and target.sticky_next_event_id > 1
        events: list[Any] = []
        if not sticky:
            events, _more = await run_db(history_of, target.execution_id, first=1,
                                         through=target.history_length)
        frame = protocol.QueryTask(
            token=f"{TOKEN_PREFIX}{uuid.uuid4().hex}", workflow_id=target.workflow_id,
            run_id=target.run_id, workflow_type=target.workflow_type,
            task_queue=target.task_queue, query_name=name, args=args,
            history_length=target.history_length, events=events,
            sticky_next_event_id=target.sticky_next_event_id if sticky else 0,
            update_validation=update_validation)
        reply = f"{REPLY_PREFIX}{uuid.uuid4().hex}"
        await layer.send(channel, deliver_event(frame, reply=reply, target=target))
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                event = await layer.receive(reply)
        except TimeoutError:
            raise QueryTimeout(f"the worker did not answer the query {name!r} within "
                               f"{cfg.query_timeout_seconds:g} s (SCHED_QUERY_TIMEOUT_SECONDS)"
                               ) from None
        result = _decode_answer(event)
        if result.error is None:
            return result.result
        if update_validation and result.error == NOT_RUN_YET:
            tried.discard(worker_id)  # the run's first task is on its way: ask again
            target = await run_db(query_target, workflow_id=target.workflow_id,
                                  run_id=target.run_id)
            await asyncio.sleep(POLL_SECONDS)
            continue
        if errors is not None and result.error in errors:
            raise errors[result.error](result.message)
        if result.error == QueryNotFound.code:
            raise QueryNotFound(result.message)
        if result.error not in _RETRY_ELSEWHERE:
            raise QueryFailed(result.message or "the query failed")


def _decode_answer(event: dict[str, Any]) -> protocol.QueryResult:
    raw = json.loads(event["text"])
    return protocol.QueryResult(token=str(raw.get("token", "")), result=raw.get("result"),
                                error=raw.get("error"), message=str(raw.get("message", "")))
