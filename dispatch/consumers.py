"""The worker endpoint: one websocket per worker at /ws/worker/.

The consumer stays thin: it decodes a frame once (``sdk.protocol``), routes it by ``type``
to a ``handle_<type>`` method, makes one call into a sync service, and sends what comes back.
A malformed or unexpected frame is answered with an error frame and changes nothing; no
frame can close the connection or stop the engine. A task's frame whose payload no database
can store (``sdk.protocol.payload_problem``: the REST API's check) or that is larger than
``SCHED_MAX_PAYLOAD_BYTES`` fails that task instead (``refuse_item``), and is answered with an
error frame saying why (``invalid_payload``, ``payload_too_large``).

Credit: a worker says how many tasks of each kind it can hold. The consumer counts the leases
it has sent and not seen completed; a completion may hand the run's next tasks straight back
to this worker (activities within the free slots, the run's workflow task whatever they say;
see ``workflows.services.write_transition``), and a start may hand it a new run's first
workflow task within its free workflow slots (``dispatch.lessees``, registered on hello).

Database work: every service call runs on ``db_pool()``, a few threads of sched's own
(``SCHED_DB_THREADS``; ``schedproject.dbthread``), not on asgiref's one thread shared by the
process, so the transitions of different sockets proceed side by side and none waits behind
another's. Channels hands a consumer its frames one at a time (the next is dispatched once
the handler of the one before has returned). A task's frames (completions, failures,
heartbeats, history requests) are applied side by side, up to ``SCHED_SOCKET_CONCURRENCY`` of
them (``spawn``): a worker serving many runs would otherwise wait for one transition's
round trips before the next began. Order is kept where it matters: the frames of one task
token in the order they arrived (a heartbeat before the completion of the same task), any
other frame (a credit) after the task frames before it, and the completions of one run in
the order its row lock grants (each transition locks its run and is fenced by the task's
token). Each transition may hand the worker new activities within a share of the free
slots lent to it (``lend``), so frames in flight together never exceed the worker's credit.
A unit runs to its commit or rollback even when the coroutine awaiting it is canceled (the
socket went away), and the socket's ``worker_disconnect`` starts only after its units have
ended, so a hand-off committed by one of them is released with the rest of the worker's
leases. With ``SCHED_SOCKET_CONCURRENCY=1`` (SQLite's default) every frame goes through the
socket's ``Lane``, one at a time, in order.

Liveness, revocation and flow control are the session keeper's (``dispatch.keeper``): a ping
is answered with no database work, every frame notes that the worker was heard from, and the
keeper records it, closes sockets whose token was revoked or whose session was dropped, and
pauses (credit zero) or drops sockets that do not read or make no progress. However the
consumer ends (a close, or its channel layer failing under it), ``_gone`` drops its session
and hands its leases back, once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import Error as DatabaseError
from django.utils import timezone

from schedproject import config
from schedproject.dbthread import DbPool, Lane, retrieve
from sdk import protocol
from workflows.errors import SchedError
from workflows.models import ApiToken
from workflows.services import (
    Lessee,
    activity_task_complete,
    activity_task_fail,
    activity_task_hand_off,
    activity_task_heartbeat,
    workflow_task_complete,
    workflow_task_fail,
)

from . import draining, keeper, lessees, metrics, notify, queries, services, wakeup
from .engine import ENGINE_ID
from .store import execution_id_from_token

log = logging.getLogger("sched.worker_socket")
# Close codes: daphne (autobahn) sends only 1000 and 3000-4999, and refuses any other code
# without closing, so the socket's cleanup would never run; sched's are 4000 + the standard
# code they stand for.
CLOSE_UNAUTHORIZED = 4401
CLOSE_DATABASE_ERROR = 4011  # 1011: the engine cannot serve this frame now; reconnect

_Item = (protocol.WorkflowTaskCompleted | protocol.WorkflowTaskFailedMsg
         | protocol.ActivityTaskCompleted | protocol.ActivityTaskFailedMsg
         | protocol.ActivityHeartbeat)
# Frames of one task, which may be applied beside other tasks' (``WorkerConsumer.spawn``).
_TokenFrame = _Item | protocol.HistoryRequest
_TOKEN_FRAMES = (protocol.WorkflowTaskCompleted, protocol.WorkflowTaskFailedMsg,
                 protocol.ActivityTaskCompleted, protocol.ActivityTaskFailedMsg,
                 protocol.ActivityHeartbeat, protocol.HistoryRequest)
T = TypeVar("T")
_ITEMS = (protocol.WorkflowTaskCompleted, protocol.WorkflowTaskFailedMsg,
          protocol.ActivityTaskCompleted, protocol.ActivityTaskFailedMsg,
          protocol.ActivityHeartbeat)


def _too_large(size: int, limit: int) -> str:
    return (f"the frame is {size} bytes, more than the engine takes ({limit} bytes, "
            "SCHED_MAX_PAYLOAD_BYTES)")


def _refusal(message: protocol.Message, size: int, limit: int) -> tuple[str, str] | None:
    """Why a decoded frame cannot be applied as it is: ``(code, message)``, or None."""
    if size > limit:
        return "payload_too_large", _too_large(size, limit)
    problem = protocol.payload_problem_of(message)
    return ("invalid_payload", problem) if problem else None


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
    token_id: int = 0
    db: Lane
    handling = 0  # frames or deliveries being handled
    closing = False  # the engine is closing or has dropped the socket
    _gone_done = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # A channel layer that fails under a socket (Redis restarting) ends the consumer with
        # an exception and no websocket.disconnect: the socket still goes (daphne closes it
        # with 1011), and so must its session, its leases and its place among the lessees.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.shield(self._gone())

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first hops to asgiref's shared thread to close that thread's
        # stale connections, for every frame and every delivery. This consumer does no
        # database work on that thread (its lane's units close their own), so skip the hop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        if message["type"] == "websocket.receive":
            self.heard_at = timezone.now()  # every frame says the worker is alive
        self.handling += 1
        try:
            await handler(message)
        finally:
            self.handling -= 1

    async def connect(self) -> None:
        self.db = db_pool().lane()
        self.held: dict[str, str] = {}  # token -> task kind, of leases this worker holds
        # Queries sent to this worker and not answered (``dispatch.queries``): token -> the
        # asking engine's reply channel, the run's execution id, the last event it may read.
        self.pending_queries: dict[str, tuple[str, int, int]] = {}
        # Liveness and flow control (``dispatch.keeper``): when the worker was last heard
        # from (wall clock) and last reported so; when each held task was sent and when the
        # worker last made progress (monotonic); its advertised credit (capped) and whether
        # it is paused.
        self.heard_at = self.reported_at = timezone.now()
        self.sent_at: dict[str, float] = {}
        self.progress_at = time.monotonic()
        self.credit = (0, 0)
        self.paused = False
        self.max_workflow = 0
        self.max_activity = 0
        # Task frames in flight (``spawn``): their tasks, the last of each task token, their
        # database units, and the activity slots lent to their transitions.
        self.concurrency = config.get().socket_concurrency
        self.items: set[asyncio.Task[None]] = set()
        self.by_token: dict[str, asyncio.Task[None]] = {}
        self.units: set[Future[Any]] = set()
        self.lent = 0
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
        self.token_id = token.pk
        draining.add(self)
        keeper.add(self)

    async def disconnect(self, code: int) -> None:
        await self._gone()

    async def _gone(self) -> None:
        """The socket is gone (closed, or its consumer failed): once, drop the session and
        hand the worker's tasks back."""
        if self._gone_done:
            return
        self._gone_done = True
        draining.discard(self)
        lessees.unregister(self)
        notify.stop_serving_locally(getattr(self, "channel_name", ""), self)
        keeper.discard(self)
        for item in list(getattr(self, "items", ())):
            item.cancel()  # their units run on, and are waited for below
        if getattr(self, "units", None):
            await asyncio.gather(*(asyncio.wrap_future(unit) for unit in list(self.units)),
                                 return_exceptions=True)
        try:
            if self.hello is not None:
                await self.db.run(
                    services.worker_disconnect, worker_id=self.worker_id, now=timezone.now())
                wakeup.wake(wakeup.DISPATCH)
        finally:
            await self._queries_gone()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.worker_id:
            return
        frame = text_data if text_data is not None else bytes_data or b""
        request_id: str | None = None
        try:
            size, limit = protocol.frame_size(frame), config.get().max_payload_bytes
            try:
                message = protocol.decode_worker_message(frame)
            except protocol.ProtocolError as exc:
                if size > limit:  # however it decodes, say first what the worker can fix
                    raise protocol.ProtocolError("payload_too_large",
                                                 _too_large(size, limit), exc.request_id) from None
                raise
            request_id = getattr(message, "id", None)
            if self.hello is None and not isinstance(message, protocol.Hello):
                raise SchedError("send hello first", code="hello_required")
        except Exception as exc:
            await self.answer_error(exc, request_id)
            return
        if self.concurrency > 1 and isinstance(message, _TOKEN_FRAMES):
            await self.spawn(message, size, limit)
            return
        if self.items and not isinstance(message, protocol.Ping | protocol.QueryResult):
            await self.drain()  # a credit applies after the completions sent before it
        await self.apply(message, size, limit)

    async def apply(self, message: protocol.Message, size: int, limit: int) -> None:
        """Handle one decoded frame, answering an error frame for whatever goes wrong."""
        request_id: str | None = getattr(message, "id", None)
        try:
            refusal = _refusal(message, size, limit)
            with draining.frame(self):
                if refusal is None:
                    await getattr(self, f"handle_{message.type}")(message)
                elif isinstance(message, _ITEMS):
                    await self.refuse_item(message, *refusal)
                elif isinstance(message, protocol.QueryResult):
                    await self.refuse_query(message, *refusal)
                else:
                    raise SchedError(refusal[1], code=refusal[0])
        except Exception as exc:
            await self.answer_error(exc, request_id)

    async def answer_error(self, exc: Exception, request_id: str | None) -> None:
        if isinstance(exc, protocol.ProtocolError):
            await self.send_message(protocol.Error(code=exc.code, message=exc.message,
                                                   id=exc.request_id))
        elif isinstance(exc, SchedError):
            await self.send_message(protocol.Error(code=exc.code, message=exc.message,
                                                   id=request_id))
        elif isinstance(exc, DatabaseError):
            # The database is away (restarting, failing over). The frame may or may not have
            # been applied, and an error answer would make the worker drop it while its lease
            # lives on: close instead. The worker reconnects, and the leases it held go back
            # to the queue (at disconnect, or when the leader finds the session silent).
            log.warning("worker %s: database error while handling a frame; closing the socket",
                        self.worker_id, exc_info=exc)
            await self.close(code=CLOSE_DATABASE_ERROR)
        else:
            metrics.item_failed("worker_socket")
            log.error("worker %s: failed to handle a frame", self.worker_id, exc_info=exc,
                      extra={"worker_id": self.worker_id})
            await self.send_message(protocol.Error(code="internal_error",
                                                   message="the engine could not handle that",
                                                   id=request_id))

    # ---- frames of tasks, applied side by side ----------------------------------------------

    async def spawn(self, message: _TokenFrame, size: int, limit: int) -> None:
        """Apply a task's frame beside the other tasks' frames in flight (at most
        ``concurrency``; past that the socket's next frame waits), after the frames of the
        same task that came before it."""
        while len(self.items) >= self.concurrency:
            await asyncio.wait(self.items, return_when=asyncio.FIRST_COMPLETED)
        before = self.by_token.get(message.token)
        item = asyncio.create_task(self._apply_after(before, message, size, limit))
        self.items.add(item)
        self.by_token[message.token] = item
        item.add_done_callback(functools.partial(self._item_done, message.token))

    async def _apply_after(self, before: asyncio.Task[None] | None, message: _TokenFrame,
                           size: int, limit: int) -> None:
        if before is not None:
            await asyncio.wait([before])
        self.handling += 1
        try:
            await self.apply(message, size, limit)
        finally:
            self.handling -= 1

    def _item_done(self, token: str, item: asyncio.Task[None]) -> None:
        self.items.discard(item)
        if self.by_token.get(token) is item:
            del self.by_token[token]

    async def drain(self) -> None:
        """Wait until the task frames in flight have been applied."""
        while self.items:
            await asyncio.wait(list(self.items))

    async def run_unit(self, fn: Callable[..., T], /, *args: Any, group: str = "",
                       **kwargs: Any) -> T:
        """Run a task frame's database work: on the socket's lane when its frames are applied
        one at a time, else on the pool directly (the unit runs to its end even if this
        coroutine is canceled, and ``_gone`` waits for it). ``group``: the token of the task
        a transition service acts on; the pool may then commit it together with the units of
        other frames (``schedproject.dbthread``'s group commit)."""
        if self.concurrency <= 1:
            return await self.db.run(fn, *args, **kwargs)
        key = execution_id_from_token(group) if group else None
        if key is not None:
            unit = db_pool().submit_grouped(key, fn, *args, **kwargs)
        else:
            unit = db_pool().submit(fn, *args, **kwargs)
        self.units.add(unit)
        unit.add_done_callback(self.units.discard)
        waited = asyncio.wrap_future(unit)
        waited.add_done_callback(retrieve)
        return await asyncio.shield(waited)

    def lend(self) -> tuple[Lessee, int]:
        """The lessee a task frame's transition may hand new tasks to, and the activity slots
        lent to it: with frames side by side each takes its share of the free slots (the
        free slots over the frames in flight: all of them when it is alone), so together
        they never hand the worker more than its credit."""
        lessee = self.lessee()
        free = max(lessee.activity_slots, 0)
        lent = free if self.concurrency <= 1 else min(
            free, max(1, -(-free // max(1, len(self.items)))))
        lessee.activity_slots = lent
        self.lent += lent
        return lessee, lent

    async def refuse_item(self, message: _Item, code: str, text: str) -> None:
        """A task's frame whose payload cannot be taken (``invalid_payload``,
        ``payload_too_large``): that task fails instead, as if the worker had reported the
        problem (an activity attempt under its retry policy, a workflow task with its
        back-off), and the frame is answered with an error saying why."""
        log.warning("worker %s: refused a %s frame of task %s: %s: %s", self.worker_id,
                    message.type, message.token.split(".")[0], code, text,
                    extra={"worker_id": self.worker_id})
        failure = {"type": code, "message": text, "non_retryable": False}
        was_full = self.is_full()
        try:
            if isinstance(message, protocol.WorkflowTaskCompleted | protocol.WorkflowTaskFailedMsg):
                await self.complete(message.token, None, workflow_task_fail, cause=code,
                                    failure=failure)
            else:
                await self.complete(message.token, None, activity_task_fail, lend=True,
                                    failure=failure)
        except SchedError as exc:  # not this worker's live lease: nothing to fail
            text = f"{text} (and the task was not changed: {exc.code}: {exc.message})"
            await self.after_completion(message.token, None, None, was_full=was_full)
        await self.send_message(protocol.Error(code=code, message=text, id=message.id))

    # ---- sending ---------------------------------------------------------------------------

    async def send_message(self, message: protocol.Message) -> None:
        await self.send(text_data=message.encode())

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None,
                   close: bool = False) -> None:
        await super().send(text_data, bytes_data, close)
        if self.hello is not None and not close:
            self.review_flow(time.monotonic())

    async def send_tasks(self, messages: list[dict[str, Any]]) -> None:
        await self.send_frames([notify.encode(m) for m in messages])

    async def send_frames(self, frames: list[dict[str, str]]) -> None:
        """Send task frames already encoded (``notify.encode``), counting their leases."""
        now = time.monotonic()
        for frame in frames:
            self.held[frame["token"]] = frame["type"]
            self.sent_at.pop(frame["token"], None)  # kept in the order sent: oldest first
            self.sent_at[frame["token"]] = now
            await self.send(text_data=frame["text"])

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
                      self.max_activity - (len(self.held) - workflows) - self.lent,
                      cfg.lease_timeout_seconds, cfg.workflow_task_timeout_seconds,
                      takes_events=self.hello.eager_workflow_tasks)

    def is_full(self) -> bool:
        """Whether the worker holds all it can of some kind: then the dispatcher may be holding
        tasks back for it, and a completion must wake it."""
        workflows = sum(1 for kind in self.held.values() if kind == "workflow_task")
        return (workflows >= self.max_workflow
                or len(self.held) - workflows >= self.max_activity)

    async def after_completion(self, token: str, outcome: Any, request_id: str | None,
                               *, was_full: bool) -> None:
        self.release(token)
        self.progress_at = time.monotonic()
        events = None if outcome is None else outcome.ack_events
        if (request_id is not None and outcome is not None and outcome.deliveries
                and self.hello is not None and self.hello.acks_on_tasks):
            # The run's next task carries the ack: one frame instead of two.
            outcome.deliveries[0]["ack"] = request_id
            if events is not None:
                outcome.deliveries[0]["ack_events"] = events
            request_id = None
        await self.ack(request_id, events=events)
        if outcome is not None:
            if outcome.deliveries:
                await self.send_tasks(outcome.deliveries)
            await notify.send_cancels(outcome.cancels)
        if was_full:
            wakeup.wake(wakeup.DISPATCH)

    # ---- channel layer events --------------------------------------------------------------

    async def task_deliver(self, event: dict[str, Any]) -> None:
        try:
            await self.send_frames(event["frames"])
        finally:
            lessees.delivered(self, event)

    async def query_deliver(self, event: dict[str, Any]) -> None:
        """A query for this worker (``dispatch.queries``): forward its frame, and remember
        whom to answer."""
        if self.hello is None or self._gone_done or self.closing:
            await self._answer_query(event["reply"], protocol.QueryResult(
                token=event["token"], error=queries.WORKER_GONE, message="the worker went away"))
            return
        self.pending_queries[event["token"]] = (event["reply"], int(event["execution_id"]),
                                        int(event["through"]))
        await self.send(text_data=event["text"])

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
        self.credit = (services.capped(message.max_workflow_tasks),
                       services.capped(message.max_activity_tasks))
        self._apply_credit()
        lessees.register(self)
        notify.serve_locally(self.channel_name, self)
        await self.send_message(protocol.Welcome(
            worker_id=self.worker_id, heartbeat_interval=config.get().worker_heartbeat_seconds,
            max_payload_bytes=config.get().max_payload_bytes, eager_workflow_tasks=True))
        wakeup.wake(wakeup.DISPATCH)

    async def handle_credit(self, message: protocol.Credit) -> None:
        self.credit = (services.capped(message.max_workflow_tasks),
                       services.capped(message.max_activity_tasks))
        workflows, activities = self._effective_credit()
        await self.db.run(
            services.worker_credit, worker_id=self.worker_id, max_workflow_tasks=workflows,
            max_activity_tasks=activities, now=timezone.now())
        self._apply_credit()
        await self.ack(message.id)
        wakeup.wake(wakeup.DISPATCH)

    async def complete(self, token: str, request_id: str | None, fn: Callable[..., Any], *,
                       lend: bool = False, **kwargs: Any) -> None:
        """Apply a task's outcome (``fn``, a transition service) and send what it hands back;
        when the worker held all it could, wake the dispatcher. A SchedError (a stale lease)
        propagates, the task no longer counted as held."""
        was_full = self.is_full()
        lessee, lent = self.lend() if lend else (None, 0)
        try:
            if lessee is not None:
                kwargs["lessee"] = lessee
            try:
                outcome = await self.run_unit(fn, token=token, worker_id=self.worker_id,
                                              group=token, **kwargs)
            finally:
                self.release(token)
            await self.after_completion(token, outcome, request_id, was_full=was_full)
        finally:
            self.lent -= lent

    async def handle_workflow_task_completed(self, message: protocol.WorkflowTaskCompleted) -> None:
        await self.complete(message.token, message.id, workflow_task_complete, lend=True,
                            commands=message.commands)

    async def handle_workflow_task_failed(self, message: protocol.WorkflowTaskFailedMsg) -> None:
        await self.complete(message.token, message.id, workflow_task_fail, cause=message.cause,
                            failure=message.failure)

    async def handle_activity_task_completed(self, message: protocol.ActivityTaskCompleted) -> None:
        eager = (message.workflow_task if self.hello is not None
                 and self.hello.eager_workflow_tasks else None)
        await self.complete(message.token, message.id, activity_task_complete, lend=True,
                            result=message.result, workflow_task=eager)

    async def handle_activity_task_failed(self, message: protocol.ActivityTaskFailedMsg) -> None:
        await self.complete(message.token, message.id, activity_task_fail, lend=True,
                            failure=message.failure, canceled=message.canceled)

    async def handle_activity_task_async(self, message: protocol.ActivityTaskAsync) -> None:
        was_full = self.is_full()
        try:
            await self.db.run(activity_task_hand_off, token=message.token,
                              worker_id=self.worker_id)
        finally:
            self.release(message.token)
        await self.after_completion(message.token, None, message.id, was_full=was_full)

    async def handle_activity_heartbeat(self, message: protocol.ActivityHeartbeat) -> None:
        cancel = await self.run_unit(
            activity_task_heartbeat, token=message.token, details=message.details,
            worker_id=self.worker_id, group=message.token)
        self.progress_at = time.monotonic()
        await self.ack(message.id, cancel_requested=cancel)

    async def handle_history_request(self, message: protocol.HistoryRequest) -> None:
        query = self.pending_queries.get(message.token)
        if query is not None:  # a query's replay (``dispatch.queries``)
            _reply, execution_id, through = query
            events, more = await self.run_unit(
                queries.history_of, execution_id, first=message.first_event_id, through=through)
            await self.send(text_data=protocol.History(token=message.token, events=events,
                                                       more=more, id=message.id).encode())
            return
        events, more = await self.run_unit(
            services.history_for, token=message.token, worker_id=self.worker_id,
            now=timezone.now(), first_event_id=message.first_event_id)
        await self.send(text_data=protocol.History(token=message.token, events=events,
                                                   more=more, id=message.id).encode())

    async def handle_query_result(self, message: protocol.QueryResult) -> None:
        query = self.pending_queries.pop(message.token, None)
        if query is None:
            raise SchedError("no query of this worker has that token (answered already, or "
                             "never sent)", code="stale_task")
        await self._answer_query(query[0], message)
        await self.ack(message.id)

    async def refuse_query(self, message: protocol.QueryResult, code: str, text: str) -> None:
        """A query's answer that cannot be taken (``invalid_payload``, ``payload_too_large``):
        its caller is told the query failed, and the frame is answered with the error."""
        query = self.pending_queries.pop(message.token, None)
        if query is not None:
            await self._answer_query(query[0], protocol.QueryResult(
                token=message.token, error=queries.QueryFailed.code,
                message=f"the worker's answer was refused: {code}: {text}"))
        await self.send_message(protocol.Error(code=code, message=text, id=message.id))

    async def _answer_query(self, reply: str, result: protocol.QueryResult) -> None:
        try:
            await queries.send_answer(reply, result)
        except Exception:  # the asking engine times the query out
            metrics.item_failed("worker_socket")
            log.warning("worker %s: could not pass a query's answer on", self.worker_id,
                        exc_info=True)

    async def _queries_gone(self) -> None:
        """The socket went: its callers' queries are asked of another worker."""
        pending, self.pending_queries = getattr(self, "pending_queries", {}), {}
        for token, (reply, _execution_id, _through) in pending.items():
            await self._answer_query(reply, protocol.QueryResult(
                token=token, error=queries.WORKER_GONE, message="the worker went away"))

    async def handle_ping(self, message: protocol.Ping) -> None:
        # No database work: the frame was noted as heard on its way in, and the session
        # keeper records it (``dispatch.keeper``).
        await self.send_message(protocol.Pong(id=message.id))

    # ---- liveness, revocation and flow control (``dispatch.keeper``) -------------------------

    def heard(self) -> services.Heard | None:
        if self.hello is None or self._gone_done:
            return None
        at = timezone.now() if self.handling else self.heard_at
        if at <= self.reported_at:
            return services.Heard(self.worker_id, None)
        self.reported_at = at
        tokens = tuple(t for t, kind in self.held.items() if kind == protocol.ActivityTask.type)
        return services.Heard(self.worker_id, at, tokens)

    async def revoked(self) -> None:
        if self.closing:
            return
        self.closing = True
        log.warning("worker %s: its token was revoked; closing the socket", self.worker_id)
        await self.send_message(protocol.Error(code="token_revoked",
                                               message="the worker token was revoked"))
        await self.close(code=CLOSE_UNAUTHORIZED)

    async def session_lost(self) -> None:
        # The engine dropped this worker as silent and handed its tasks back.
        if self.closing:
            return
        self.closing = True
        await self.close(code=keeper.CLOSE_SESSION_LOST)

    def review_flow(self, now: float) -> None:
        if self.hello is None or self._gone_done or self.closing:
            return
        pause, close = keeper.limits()
        buffered = keeper.send_buffer_bytes(self.base_send)
        if buffered is not None and buffered > close:
            log.warning("worker %s: %d bytes sent and not read; dropping the socket",
                        self.worker_id, buffered)
            self.closing = True
            keeper.drop_connection(self.base_send)
            return
        paused = (buffered is not None and buffered > pause) or self._stalled(now)
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            log.warning("worker %s: %s; no new tasks for it", self.worker_id,
                        "its send buffer is full" if buffered and buffered > pause
                        else "it made no progress on the tasks it was sent")
        self._apply_credit()
        workflows, activities = self._effective_credit()
        self.db.submit(services.worker_credit, worker_id=self.worker_id,
                       max_workflow_tasks=workflows, max_activity_tasks=activities,
                       now=timezone.now()).add_done_callback(self._credit_written)
        if not paused:
            wakeup.wake(wakeup.DISPATCH)

    def _credit_written(self, done: Future[None]) -> None:
        if done.exception() is not None:  # the next change, or the next credit, writes it
            log.warning("worker %s: could not write its credit", self.worker_id,
                        exc_info=done.exception())

    def _stalled(self, now: float) -> bool:
        """Sent tasks, and no progress within a lease timeout of the oldest it holds.

        Runs at every send: ``sent_at`` is in the order sent, so the oldest task still held
        is found by dropping those no longer held from its front (each token once), not by a
        pass over all of them; and ``release`` drops a token as it stops being held."""
        sent = self.sent_at
        while sent:
            token = next(iter(sent))
            if token in self.held:
                break
            del sent[token]
        if not sent:
            return False
        oldest = sent[token]
        return (now - oldest >= config.get().lease_timeout_seconds
                and self.progress_at <= oldest)

    def release(self, token: str) -> None:
        """The worker no longer holds the task of ``token``."""
        self.held.pop(token, None)
        self.sent_at.pop(token, None)

    def _effective_credit(self) -> tuple[int, int]:
        return (0, 0) if self.paused or draining.active else self.credit

    def _apply_credit(self) -> None:
        self.max_workflow, self.max_activity = self._effective_credit()
