"""The worker endpoint: one websocket per worker at /ws/worker/.

The consumer stays thin: it decodes a frame once (``sdk.protocol``), routes it by ``type``
to a ``handle_<type>`` method, makes one call into a sync service, and sends what comes back.
A malformed or unexpected frame is answered with an error frame and changes nothing; no
frame can close the connection or stop the engine.

Credit: a worker says how many tasks of each kind it can hold. The consumer counts the leases
it has sent and not seen completed; a completion may hand the run's next tasks straight back
to this worker (activities within the free slots, the run's workflow task whatever they say;
see ``workflows.services.write_transition``), and a start may hand it a new run's first
workflow task within its free workflow slots (``dispatch.lessees``, registered on hello).

Database work: every service call runs on ``db_pool()``, a few threads of sched's own
(``SCHED_DB_THREADS``; ``schedproject.dbthread``), not on asgiref's one thread shared by the
process, so the transitions of different sockets proceed side by side and none waits behind
another's. Order is kept per socket, and this is what makes ``held`` and the free credit
right: Channels hands a consumer its frames and channel-layer events one at a time (the
next is dispatched once the handler of the one before has returned), so a socket's frames
are applied in the order they arrived: a heartbeat before the completion of the same task,
a completion before the next frame of the same run, a credit before the completions that
follow it. The socket's ``Lane`` keeps that order when a handler's coroutine is canceled
while its unit runs (the socket went away): the unit finishes on its thread, and the
socket's next unit (its ``worker_disconnect``) starts only after it, so a hand-off committed
by that unit is released with the rest of the worker's leases.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import Error as DatabaseError
from django.utils import timezone

from schedproject import config
from schedproject.dbthread import DbPool, Lane
from sdk import protocol
from workflows.errors import SchedError
from workflows.models import ApiToken
from workflows.services import (
    Lessee,
    activity_task_complete,
    activity_task_fail,
    activity_task_heartbeat,
    workflow_task_complete,
    workflow_task_fail,
)

from . import draining, lessees, notify, services, wakeup
from .engine import ENGINE_ID

log = logging.getLogger("sched.worker_socket")
CLOSE_UNAUTHORIZED = 4401
CLOSE_DATABASE_ERROR = 1011


_pool: DbPool | None = None


def db_pool() -> DbPool:
    """The threads all worker sockets of this process run their database work on
    (``SCHED_DB_THREADS`` of them), made at first use."""
    global _pool
    if _pool is None:
        _pool = DbPool("sockets", config.get().db_threads)
    return _pool


def _bearer(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return str(text[7:].strip())
    return ""


class WorkerConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    worker_id: str = ""
    hello: protocol.Hello | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first hops to asgiref's shared thread to close that thread's
        # stale connections, for every frame and every delivery. This consumer does no
        # database work on that thread (its lane's units close their own), so skip the hop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.db: Lane = db_pool().lane()
        self.held: dict[str, str] = {}  # token -> task kind, of leases this worker holds
        self.max_workflow = 0
        self.max_activity = 0
        await self.accept()
        if draining.active:  # this engine is shutting down: try another
            await self.close(code=draining.CLOSE_GOING_AWAY)
            return
        token = await self.db.run(ApiToken.verify, _bearer(self.scope), scope="worker")
        if token is None:
            await self.send_message(protocol.Error(code="unauthenticated",
                                                   message="a worker token is required"))
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.worker_id = uuid.uuid4().hex
        draining.add(self)

    async def disconnect(self, code: int) -> None:
        draining.discard(self)
        lessees.unregister(self)
        if self.hello is not None:
            await self.db.run(
                services.worker_disconnect, worker_id=self.worker_id, now=timezone.now())
            wakeup.wake(wakeup.DISPATCH)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.worker_id:
            return
        frame = text_data if text_data is not None else bytes_data or b""
        if len(frame) > config.get().max_payload_bytes:
            await self.send_message(protocol.Error(
                code="payload_too_large",
                message=f"frames are limited to {config.get().max_payload_bytes} bytes"))
            return
        request_id: str | None = None
        try:
            message = protocol.decode_worker_message(frame)
            request_id = getattr(message, "id", None)
            if self.hello is None and not isinstance(message, protocol.Hello):
                raise SchedError("send hello first", code="hello_required")
            handler = getattr(self, f"handle_{message.type}")
            with draining.frame(self):
                await handler(message)
        except protocol.ProtocolError as exc:
            await self.send_message(protocol.Error(code=exc.code, message=exc.message,
                                                   id=exc.request_id))
        except SchedError as exc:
            await self.send_message(protocol.Error(code=exc.code, message=exc.message,
                                                   id=request_id))
        except DatabaseError:
            # The database is away (restarting, failing over). The frame may or may not have
            # been applied, and an error answer would make the worker drop it while its lease
            # lives on: close instead. The worker reconnects, and the leases it held go back
            # to the queue (at disconnect, or when the leader finds the session silent).
            log.warning("worker %s: database error while handling a frame; closing the socket",
                        self.worker_id, exc_info=True)
            await self.close(code=CLOSE_DATABASE_ERROR)
        except Exception:
            log.exception("worker %s: failed to handle a frame", self.worker_id,
                          extra={"worker_id": self.worker_id})
            await self.send_message(protocol.Error(code="internal_error",
                                                   message="the engine could not handle that",
                                                   id=request_id))

    # ---- sending ---------------------------------------------------------------------------

    async def send_message(self, message: protocol.Message) -> None:
        await self.send(text_data=message.encode())

    async def send_tasks(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.held[message["token"]] = message["type"]
            await self.send(text_data=json.dumps(message, separators=(",", ":")))

    async def ack(self, request_id: str | None, **extra: Any) -> None:
        if request_id is not None:
            await self.send_message(protocol.Ack(id=request_id, **extra))

    def lessee(self) -> Lessee:
        assert self.hello is not None
        workflows = sum(1 for kind in self.held.values() if kind == "workflow_task")
        cfg = config.get()
        return Lessee(self.worker_id, self.hello.task_queue,
                      frozenset(self.hello.workflow_types), frozenset(self.hello.activity_types),
                      self.max_workflow - workflows,
                      self.max_activity - (len(self.held) - workflows),
                      cfg.lease_timeout_seconds, cfg.workflow_task_timeout_seconds)

    def is_full(self) -> bool:
        """Whether the worker holds all it can of some kind: then the dispatcher may be holding
        tasks back for it, and a completion must wake it."""
        workflows = sum(1 for kind in self.held.values() if kind == "workflow_task")
        return (workflows >= self.max_workflow
                or len(self.held) - workflows >= self.max_activity)

    async def after_completion(self, token: str, outcome: Any, request_id: str | None,
                               *, was_full: bool) -> None:
        self.held.pop(token, None)
        await self.ack(request_id)
        if outcome is not None:
            if outcome.deliveries:
                await self.send_tasks(outcome.deliveries)
            await notify.send_cancels(outcome.cancels)
        if was_full:
            wakeup.wake(wakeup.DISPATCH)

    # ---- channel layer events --------------------------------------------------------------

    async def task_deliver(self, event: dict[str, Any]) -> None:
        try:
            await self.send_tasks(event["messages"])
        finally:
            lessees.delivered(self, event)

    async def task_cancel(self, event: dict[str, Any]) -> None:
        if event["token"] in self.held:
            await self.send_message(protocol.ActivityCancel(token=event["token"]))

    # ---- frames from the worker ------------------------------------------------------------

    async def handle_hello(self, message: protocol.Hello) -> None:
        if self.hello is not None:
            raise SchedError("hello was already sent", code="unexpected_message")
        registered = await self.db.run(
            services.worker_register, worker_id=self.worker_id, channel_name=self.channel_name,
            engine_id=ENGINE_ID, hello=message, now=timezone.now())
        self.held.update(registered.resumed)  # the leases it took over from its last socket
        self.hello = message
        self.max_workflow = message.max_workflow_tasks
        self.max_activity = message.max_activity_tasks
        lessees.register(self)
        await self.send_message(protocol.Welcome(
            worker_id=self.worker_id, heartbeat_interval=config.get().worker_heartbeat_seconds))
        wakeup.wake(wakeup.DISPATCH)

    async def handle_credit(self, message: protocol.Credit) -> None:
        await self.db.run(
            services.worker_credit, worker_id=self.worker_id,
            max_workflow_tasks=message.max_workflow_tasks,
            max_activity_tasks=message.max_activity_tasks, now=timezone.now())
        self.max_workflow = message.max_workflow_tasks
        self.max_activity = message.max_activity_tasks
        await self.ack(message.id)
        wakeup.wake(wakeup.DISPATCH)

    async def handle_workflow_task_completed(self, message: protocol.WorkflowTaskCompleted) -> None:
        was_full = self.is_full()
        try:
            outcome = await self.db.run(
                workflow_task_complete, token=message.token, commands=message.commands,
                worker_id=self.worker_id, lessee=self.lessee())
        finally:
            self.held.pop(message.token, None)
        await self.after_completion(message.token, outcome, message.id, was_full=was_full)

    async def handle_workflow_task_failed(self, message: protocol.WorkflowTaskFailedMsg) -> None:
        was_full = self.is_full()
        try:
            outcome = await self.db.run(
                workflow_task_fail, token=message.token, cause=message.cause,
                failure=message.failure, worker_id=self.worker_id)
        finally:
            self.held.pop(message.token, None)
        await self.after_completion(message.token, outcome, message.id, was_full=was_full)

    async def handle_activity_task_completed(self, message: protocol.ActivityTaskCompleted) -> None:
        was_full = self.is_full()
        try:
            outcome = await self.db.run(
                activity_task_complete, token=message.token, result=message.result,
                worker_id=self.worker_id, lessee=self.lessee())
        finally:
            self.held.pop(message.token, None)
        await self.after_completion(message.token, outcome, message.id, was_full=was_full)

    async def handle_activity_task_failed(self, message: protocol.ActivityTaskFailedMsg) -> None:
        was_full = self.is_full()
        try:
            outcome = await self.db.run(
                activity_task_fail, token=message.token, failure=message.failure,
                canceled=message.canceled, worker_id=self.worker_id, lessee=self.lessee())
        finally:
            self.held.pop(message.token, None)
        await self.after_completion(message.token, outcome, message.id, was_full=was_full)

    async def handle_activity_heartbeat(self, message: protocol.ActivityHeartbeat) -> None:
        cancel = await self.db.run(
            activity_task_heartbeat, token=message.token, details=message.details,
            worker_id=self.worker_id)
        await self.ack(message.id, cancel_requested=cancel)

    async def handle_history_request(self, message: protocol.HistoryRequest) -> None:
        events, more = await self.db.run(
            services.history_for, token=message.token, worker_id=self.worker_id,
            now=timezone.now(), first_event_id=message.first_event_id)
        await self.send(text_data=protocol.History(token=message.token, events=events,
                                                   more=more, id=message.id).encode())

    async def handle_ping(self, message: protocol.Ping) -> None:
        alive = await self.db.run(
            services.worker_ping, worker_id=self.worker_id, now=timezone.now())
        if not alive:
            # The engine dropped this worker as silent and handed its tasks back.
            await self.close(code=4408)
            return
        await self.send_message(protocol.Pong(id=message.id))
