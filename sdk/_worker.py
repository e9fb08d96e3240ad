"""The worker: one websocket to the engine, workflow tasks and activities over it.

Design notes (what was weighed and why it is this way):

* One reader and one writer per connection. The reader decodes each frame once, routes it by
  ``type`` to a ``_handle_<type>`` method and never awaits user code; the writer task drains
  an ``asyncio.Queue`` of encoded frames, so every send is serialized and a slow socket
  backs up the queue instead of the event loop.
* Workflow activations run off the loop, each on a thread of a small pool, watched for
  deadlocks (``sdk._activations``): workflow code that blocks holds its thread, not the
  websocket, and one that does not yield for ``deadlock_timeout`` seconds fails its
  workflow task with cause ``deadlock_detected`` (its thread is abandoned). Each workflow
  task is an asyncio task of its own (``_run_workflow_task``), the run out of the cache
  while it runs. The runtime's
  ``activate`` never raises. A sticky task (``first_event_id > 1``) reuses the cached
  ``WorkflowInstance`` only if it expects exactly that event id; otherwise the worker asks
  for the whole history (``history_request``) and replays from scratch. The cache is an LRU
  of ``max_cached_workflows`` runs.
* Eager workflow tasks (on unless ``eager_workflow_tasks=False``, with an engine that takes
  them): the ack of a workflow task's completion carries the events it appended, and the
  cached copy of the run takes them (``_take_events``), so it knows the run's whole
  history. When an activity of such a run succeeds here, the worker runs the run's next
  workflow task at once on the result, on the events the engine would append (the
  activity's start and completion, the task's schedule and start, stamped now: the
  workflow's time during the task), and sends its commands with the completion
  (``_eager_task``). The engine records both in one transaction when nothing else happened
  to the run meanwhile; otherwise it records the completion alone and sends the task as
  usual, and the ack without events drops the copy, so that task replays the history. A
  step of a workflow costs one round trip and one transaction instead of two. A task that
  pauses on local activities or fails is not sent eagerly (the copy is dropped; the task,
  sent as usual, meets it again).
* Every failed workflow task is logged at WARNING (workflow id, run id, cause and the first
  lines of the error): a run that stays open on a failing task is found in the log. What is
  normal (a stale task the engine refused, a task dropped at shutdown) is logged at DEBUG.
* Completions carry an ``id`` and stay in ``_unacked`` until the engine answers ``ack`` or
  ``error``. If the connection drops first they are sent again on the next connection: a
  duplicate is rejected by the engine (token + attempt), while a lost activity result would
  cost a whole retry. The next connection's ``hello`` names the last session and the tokens
  the worker still holds (running activities and local-activity runs, unacknowledged
  results), so the engine moves those leases to the new socket: the results are accepted
  and the running activities are not handed to another worker. While it holds such work
  the worker reconnects at most ``RESUME_MAX_DELAY`` apart, within the engine's resume
  grace after a restart. Heartbeats and history requests are not re-sent (a new heartbeat
  supersedes them; a task waiting for history is abandoned and re-delivered by the engine
  when its lease expires).
* Credit is absolute: the worker grants its maxima in ``hello`` and ``credit 0/0`` when it
  shuts down. Activities that arrive beyond capacity (an engine bug) wait on a semaphore.
  Workflow tasks are not counted here: each runs in its own thread and asyncio task, and the
  engine hands a cached run's next workflow task back even when the workflow credit is all
  held.
* Local activities: an activation that pauses on local activities (``ActivationResult.
  local_activities``) waits in its workflow task's asyncio task: the worker runs the batch
  at once (async ones on the loop, sync ones in the activity thread pool, neither taking
  activity credit), with retries and back-off in the worker, hands the outcomes back to the
  instance and repeats until the workflow task's commands are ready. Every local activity of a
  workflow task shares ``local_activity_budget`` seconds counted from the task's arrival, so
  the task completes before the engine's workflow task timeout; an attempt is cut at the
  budget and no retry starts past it. The run is out of the cache meanwhile.
* Nothing a task or a frame does can stop the worker: every handler is guarded and logs.
* Payloads: with a ``payload_codec`` the worker decodes the payloads of the events and
  activity tasks it receives before any user code sees them, and encodes those of the
  commands, results, failures and heartbeats it sends (``sdk._converter``), so the engine
  holds only what the codec produced. Values are converted to JSON (dataclasses, pydantic
  models) on the way out and rebuilt from the function's ``input`` hint on the way in.
* Sizes: the engine's welcome says the largest frame it takes (``max_payload_bytes``). A frame
  over it is never sent: its item fails instead with ``payload_too_large`` (an activity's
  result or heartbeat fails the attempt, a workflow task's commands fail the workflow task),
  so one oversized payload costs that item and never the socket. What the engine sends is
  not limited here (a run's history may be many payloads long).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import json
import logging
import math
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sdk._activations import DEFAULT_DEADLOCK_TIMEOUT, Deadlock, run_activation
from sdk._activity import (
    ActivityCancelledError,
    ActivityContext,
    ActivityDefinition,
    ActivityInfo,
    CompleteAsync,
    activity_definition,
    parse_timestamp,
)
from sdk._converter import (
    PayloadCodec,
    PayloadConversionError,
    PayloadConverter,
    from_json,
    input_hint,
    to_json,
)
from sdk._errors import ApplicationError, SchedError, failure_from_exception
from sdk._queries import (
    NOT_RUN_YET,
    NOT_RUN_YET_CODE,
    QUERY_FAILED,
    QueryAnswer,
    history_for_query,
    ran,
)
from sdk._runtime import (
    ActivationResult,
    LocalActivityOutcome,
    LocalActivityRequest,
    WorkflowInstance,
)
from sdk._tracing import span
from sdk._workflow import WorkflowDefinition, exception_types, workflow_registry
from sdk.protocol import (
    MAX_NAME_LENGTH,
    PROTOCOL_VERSION,
    TERMINAL_KINDS,
    Ack,
    ActivityCancel,
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskAsync,
    ActivityTaskCompleted,
    ActivityTaskFailedMsg,
    Credit,
    Error,
    EventType,
    Hello,
    History,
    HistoryRequest,
    JSONValue,
    Message,
    Ping,
    Pong,
    ProtocolError,
    QueryResult,
    QueryTask,
    RetryPolicy,
    Welcome,
    WireEvent,
    WireFailure,
    WorkflowTask,
    WorkflowTaskCompleted,
    WorkflowTaskFailedMsg,
    decode_engine_message,
    frame_size,
)
from sdk.protocol.limits import (
    HISTORY_WARN_BYTES,
    HISTORY_WARN_EVENTS,
    MAX_ERROR_MESSAGE_LENGTH,
    event_bytes,
)

__all__ = ["Worker", "WorkerAuthenticationError", "websocket_url"]

logger = logging.getLogger("sched.worker")

AUTH_FAILED_CLOSE_CODE = 4401
PAYLOAD_TOO_LARGE = "payload_too_large"
WELCOME_TIMEOUT = 10.0
FLUSH_TIMEOUT = 2.0
RECONNECT_BASE_DELAY = 0.1
RECONNECT_MAX_DELAY = 5.0
RESUME_MAX_DELAY = 0.3  # the back-off's ceiling while the worker holds leases to resume
STABLE_CONNECTION = 2.0  # seconds a connection must last to reset the back-off
# Seconds of local activity work one workflow task may take: below the engine's default
# workflow task timeout (SCHED_WORKFLOW_TASK_TIMEOUT_SECONDS, 10 s), which no frame announces.
DEFAULT_LOCAL_ACTIVITY_BUDGET = 8.0


class WorkerAuthenticationError(SchedError):
    """The engine refused the worker's token (close code 4401, or HTTP 401/403)."""


def websocket_url(engine_url: str) -> str:
    """``http://host:port/...`` -> ``ws://host:port/ws/worker/`` (``https`` -> ``wss``)."""
    parts = urlsplit(engine_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"engine_url must be an http(s) URL, not {engine_url!r}")
    return urlunsplit((scheme, parts.netloc, "/ws/worker/", "", ""))


@dataclass(slots=True)
class _Pending:
    """A sent message waiting for ``ack``/``error``."""

    frame: str
    on_reply: Callable[[Ack | Error], None] | None = None
    resend: bool = False  # send it again on the next connection if still unanswered
    token: str = ""  # the lease it completes, to take over on the next connection


@dataclass(slots=True)
class _Eager:
    """A workflow task run eagerly on an activity's result: the run's copy, and the frame's
    ``workflow_task`` (``sdk.protocol.ActivityTaskCompleted``)."""

    run_id: str
    inst: WorkflowInstance
    proposal: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return _closes_run(self.proposal["commands"])


@dataclass(slots=True)
class _RunningActivity:
    ctx: ActivityContext
    task: asyncio.Task[None] | None = None
    inner: asyncio.Future[Any] | None = None  # an async activity's own task
    heartbeat: asyncio.Future[None] | None = None  # the last heartbeat being encoded
    refused: WireFailure | None = None  # a heartbeat too large: the attempt fails with it


@dataclass(slots=True)
class _Connection:
    ws: ClientConnection
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    welcomed: bool = False


class Worker:
    """Runs workflows and activities for one task queue. ``await run()``; ``shutdown()``."""

    def __init__(
        self,
        engine_url: str,
        *,
        token: str,
        task_queue: str = "default",
        workflows: Iterable[Any] = (),
        activities: Iterable[Any] = (),
        max_concurrent_activities: int = 100,
        max_concurrent_workflow_tasks: int = 100,
        max_cached_workflows: int = 1000,
        identity: str | None = None,
        local_activity_budget: float = DEFAULT_LOCAL_ACTIVITY_BUDGET,
        deadlock_timeout: float | None = DEFAULT_DEADLOCK_TIMEOUT,
        workflow_failure_exception_types: Iterable[type[BaseException]] = (),
        payload_codec: PayloadCodec | None = None,
        eager_workflow_tasks: bool = True,
    ) -> None:
        if max_concurrent_activities < 1 or max_concurrent_workflow_tasks < 1:
            raise ValueError("the concurrency limits must be at least 1")
        if not local_activity_budget > 0:
            raise ValueError("local_activity_budget must be positive (seconds)")
        if deadlock_timeout is not None and not deadlock_timeout > 0:
            raise ValueError("deadlock_timeout must be positive (seconds), or None for none")
        self._local_budget = float(local_activity_budget)
        self._deadlock_timeout = None if deadlock_timeout is None else float(deadlock_timeout)
        self._failure_types = exception_types(workflow_failure_exception_types,
                                              "workflow_failure_exception_types")
        self._converter = PayloadConverter(payload_codec)
        self.engine_url = engine_url
        self.ws_url = websocket_url(engine_url)
        self.task_queue = task_queue
        self.identity = (identity or f"{socket.gethostname()}:{os.getpid()}")[:MAX_NAME_LENGTH]
        self.worker_id: str | None = None
        self._token = token
        self._max_activities = max_concurrent_activities
        self._max_workflow_tasks = max_concurrent_workflow_tasks
        self._max_cached = max(0, max_cached_workflows)
        # Eager workflow tasks (the module's docstring): asked for in hello (they need the
        # cache), on when the engine's welcome says it takes them too.
        self._eager_wanted = eager_workflow_tasks and self._max_cached > 0
        self._eager = False
        self._event_runs: set[asyncio.Task[None]] = set()  # acks' events being taken
        self._workflows: dict[str, WorkflowDefinition] = workflow_registry(workflows)
        self._activities: dict[str, ActivityDefinition] = {}
        for obj in activities:
            act = activity_definition(obj)
            known = self._activities.get(act.name)
            if known is not None and known.fn is not act.fn:
                raise ValueError(f"two activities are named {act.name!r}")
            self._activities[act.name] = act
        if not self._workflows and not self._activities:
            raise ValueError("a worker needs at least one workflow or activity")

        self._ids = itertools.count(1)
        self._cache: OrderedDict[str, WorkflowInstance] = OrderedDict()
        self._unacked: dict[str, _Pending] = {}
        self._running: dict[str, _RunningActivity] = {}
        self._awaiting_history: dict[str, WorkflowTask] = {}
        # Workflow tasks being run (activations, their local activities), by token.
        self._workflow_runs: dict[str, asyncio.Task[None]] = {}
        self._history_pages: dict[str, list[WireEvent]] = {}  # by token, while paging
        # Queries waiting for the run's history, by token: the task and the events so far.
        self._query_pages: dict[str, tuple[QueryTask, list[WireEvent]]] = {}
        self._query_runs: set[asyncio.Task[None]] = set()  # replays answering queries
        self._conn: _Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._stop: asyncio.Event | None = None
        self._draining = False
        self._shutdown_done: asyncio.Event | None = None
        self._progress = asyncio.Event()  # set whenever in-flight work finishes
        self._max_frame_bytes: int | None = None  # the engine's limit, from its welcome

    # ---- public API --------------------------------------------------------------------

    @property
    def workflow_types(self) -> list[str]:
        return sorted(self._workflows)

    @property
    def activity_types(self) -> list[str]:
        return sorted(self._activities)

    async def run(self) -> None:
        """Connect and serve until ``shutdown()``; reconnect whenever the engine goes away.

        Raises ``WorkerAuthenticationError`` if the engine refuses the token.
        """
        self._setup()
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while not self._stop.is_set():
                started = loop.time()
                try:
                    welcomed = await self._connect_once()
                except WorkerAuthenticationError:
                    raise
                except Exception as exc:  # the engine is away or broke the protocol
                    welcomed = False
                    logger.warning("worker connection to %s failed: %r", self.ws_url, exc)
                if self._stop.is_set():
                    break
                # A connection that lived a while resets the back-off; an engine that
                # welcomes and drops at once (a crash loop) is backed off like a refusal.
                stable = welcomed and loop.time() - started >= STABLE_CONNECTION
                failures = 0 if stable else failures + 1
                ceiling = RESUME_MAX_DELAY if self._held_tokens() else RECONNECT_MAX_DELAY
                delay = min(ceiling, RECONNECT_BASE_DELAY * 2 ** min(failures, 10))
                delay *= random.uniform(0.5, 1.0)
                logger.info("reconnecting in %.2f s", delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
        finally:
            self._stop.set()
            self._abandon_activities()
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop taking tasks, let in-flight ones finish within ``grace`` seconds, then close."""
        if self._stop is None:  # never ran
            self._setup()
        assert self._stop is not None and self._shutdown_done is not None
        if self._draining:
            await self._shutdown_done.wait()
            return
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        try:
            self._send(Credit(max_workflow_tasks=0, max_activity_tasks=0))
            while self._busy() and not self._stop.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._progress.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._progress.wait()
                except TimeoutError:
                    break
            if self._running:
                logger.warning("shutdown: %d activities still running after %.1f s; "
                               "cancelling them", len(self._running), grace)
            self._abandon_activities()
        finally:
            conn = self._conn
            if conn is not None:
                # let the writer send what is queued (the credit, late answers)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLUSH_TIMEOUT):
                        await conn.outbox.join()
            self._stop.set()
            if conn is not None:
                await conn.ws.close()
            self._shutdown_done.set()

    def _held_tokens(self) -> list[str]:
        """The leases this worker still holds: running activities, workflow tasks running
        their local activities, results the engine has not acknowledged."""
        held = dict.fromkeys([*self._running, *self._workflow_runs,
                              *(p.token for p in self._unacked.values() if p.token)])
        return list(held)

    def _busy(self) -> bool:
        return bool(self._running or self._unacked or self._awaiting_history
                    or self._workflow_runs)

    # ---- connection --------------------------------------------------------------------

    def _setup(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._slots = asyncio.Semaphore(self._max_activities)
        self._executor = ThreadPoolExecutor(
            max_workers=self._max_activities, thread_name_prefix="sched-activity"
        )

    async def _connect_once(self) -> bool:
        """One connection's lifetime. Returns whether the engine welcomed the worker."""
        headers = {"Authorization": f"Bearer {self._token}"}
        ws: ClientConnection | None = None
        conn: _Connection | None = None
        try:
            async with connect(
                self.ws_url,
                additional_headers=headers,
                max_size=None,  # the engine's frames: a whole history may be large
                open_timeout=WELCOME_TIMEOUT,
            ) as ws:
                conn = _Connection(ws)
                await self._serve(conn)
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise WorkerAuthenticationError(
                    f"the engine refused the worker token (HTTP {exc.response.status_code})"
                ) from None
            raise
        except ConnectionClosed:
            pass
        finally:
            self._on_disconnect()
        if ws is not None and ws.close_code == AUTH_FAILED_CLOSE_CODE:
            raise WorkerAuthenticationError("the engine refused the worker token (4401)")
        if ws is not None and not (self._stop is not None and self._stop.is_set()):
            logger.warning("disconnected from the engine (code %s %s)", ws.close_code,
                           ws.close_reason or "")
        return conn is not None and conn.welcomed

    async def _serve(self, conn: _Connection) -> None:
        ws = conn.ws
        hello = Hello(
            task_queue=self.task_queue,
            workflow_types=self.workflow_types,
            activity_types=self.activity_types,
            max_workflow_tasks=0 if self._draining else self._max_workflow_tasks,
            max_activity_tasks=0 if self._draining else self._max_activities,
            identity=self.identity,
            resume_worker_id=self.worker_id or "",
            resume_tokens=self._held_tokens() if self.worker_id else [],
            acks_on_tasks=True,
            eager_workflow_tasks=self._eager_wanted,
        )
        await ws.send(hello.encode())
        async with asyncio.timeout(WELCOME_TIMEOUT):
            frame = await ws.recv()
        welcome = decode_engine_message(frame)
        if isinstance(welcome, Error):
            if welcome.code == "unauthenticated":  # it closes with 4401 right after
                raise WorkerAuthenticationError(
                    f"the engine refused the worker token: {welcome.message}")
            raise SchedError(f"the engine refused hello: {welcome.code}: {welcome.message}")
        if not isinstance(welcome, Welcome):
            raise ProtocolError("unexpected_message", f"expected welcome, got {welcome.type}")
        conn.welcomed = True
        self._max_frame_bytes = welcome.max_payload_bytes
        self._eager = self._eager_wanted and welcome.eager_workflow_tasks
        if welcome.protocol_version != PROTOCOL_VERSION:
            logger.warning("the engine speaks protocol version %s, this worker %s",
                           welcome.protocol_version, PROTOCOL_VERSION)
        self.worker_id = welcome.worker_id
        logger.info("connected to %s as worker %s (task queue %r)", self.ws_url,
                    welcome.worker_id, self.task_queue)
        for pending in self._unacked.values():  # answers that the last connection lost
            conn.outbox.put_nowait(pending.frame)
        self._conn = conn
        writer = asyncio.create_task(self._writer(conn))
        pinger = asyncio.create_task(self._pinger(welcome.heartbeat_interval))
        try:
            async for raw in ws:
                if self._stop is not None and self._stop.is_set():
                    break
                self._on_frame(raw)
        finally:
            self._conn = None
            writer.cancel()
            pinger.cancel()
            await asyncio.gather(writer, pinger, return_exceptions=True)

    async def _writer(self, conn: _Connection) -> None:
        try:
            while True:
                frame = await conn.outbox.get()
                try:
                    await conn.ws.send(frame)
                finally:
                    conn.outbox.task_done()
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("worker writer failed; closing the connection")
            await conn.ws.close()

    async def _pinger(self, interval: float) -> None:
        interval = max(0.05, interval)
        while True:
            await asyncio.sleep(interval)
            self._send(Ping())

    def _on_disconnect(self) -> None:
        self._conn = None
        for inst in self._cache.values():  # the next session is not the runs' sticky worker
            inst.eager_ready = False
        for msg_id in [k for k, p in self._unacked.items() if not p.resend]:
            del self._unacked[msg_id]
        if self._awaiting_history:
            logger.info("dropping %d workflow tasks waiting for history",
                        len(self._awaiting_history))
            self._awaiting_history.clear()
            self._history_pages.clear()
        self._query_pages.clear()  # the engine answers their callers that the worker went
        self._progress.set()

    # ---- sending -----------------------------------------------------------------------

    def _next_id(self) -> str:
        return f"w{next(self._ids)}"

    def _send(self, msg: Message) -> None:
        """Queue one frame on the current connection (dropped if there is none)."""
        self._send_frame(msg.encode())

    def _send_frame(self, frame: str) -> None:
        conn = self._conn
        if conn is not None:
            conn.outbox.put_nowait(frame)

    def _send_tracked(
        self,
        frame: str,
        msg_id: str,
        on_reply: Callable[[Ack | Error], None] | None = None,
        *,
        resend: bool = False,
        token: str = "",
    ) -> None:
        if self._conn is None and not resend:
            return
        self._unacked[msg_id] = _Pending(frame, on_reply, resend, token)
        self._send_frame(frame)

    # ---- receiving ---------------------------------------------------------------------

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            msg = decode_engine_message(raw)
        except ProtocolError as exc:
            logger.warning("ignoring a bad frame from the engine: %s", exc.message)
            return
        except Exception as exc:  # a decoder bug must not kill the worker either
            logger.warning("ignoring an undecodable frame from the engine: %r", exc)
            return
        handler = getattr(self, f"_handle_{msg.type}", None)
        if handler is None:
            logger.warning("ignoring unexpected %r message", msg.type)
            return
        acked = getattr(msg, "ack", None)
        if acked is not None:  # a task frame that also acknowledges a completion
            try:
                self._handle_ack(Ack(id=acked, events=getattr(msg, "ack_events", None)))
            except Exception:
                logger.exception("error handling the ack a %r message carried", msg.type)
        try:
            handler(msg)
        except Exception:
            logger.exception("error handling a %r message", msg.type)
        self._progress.set()

    def _handle_ack(self, msg: Ack) -> None:
        pending = self._unacked.pop(msg.id, None)
        if pending is not None and pending.on_reply is not None:
            pending.on_reply(msg)

    def _handle_error(self, msg: Error) -> None:
        pending = self._unacked.pop(msg.id, None) if msg.id is not None else None
        if pending is None:
            logger.warning("engine error: %s: %s", msg.code, msg.message)
            return
        if pending.on_reply is not None:
            pending.on_reply(msg)
        else:
            logger.warning("engine rejected message %s: %s: %s", msg.id, msg.code, msg.message)

    def _handle_pong(self, msg: Pong) -> None:
        pass

    def _handle_welcome(self, msg: Welcome) -> None:
        logger.warning("ignoring a second welcome")

    # ---- workflow tasks ----------------------------------------------------------------

    def _handle_workflow_task(self, msg: WorkflowTask) -> None:
        definition = self._workflows.get(msg.workflow_type)
        if definition is None:
            self._fail_workflow_task(
                msg,
                "unknown_workflow_type",
                ApplicationError(
                    f"workflow type {msg.workflow_type!r} is not registered on this worker",
                    type="WorkflowNotRegisteredError",
                ),
            )
            return
        if msg.token in self._workflow_runs:
            logger.debug("ignoring a duplicate workflow task for %s", msg.workflow_id,
                         extra=_run_fields(msg))
            return
        if msg.first_event_id == 1:
            self._start_workflow_task(msg, self._new_instance(msg, definition), msg.events)
            return
        cached = self._cache.get(msg.run_id)
        if cached is not None and cached.next_event_id == msg.first_event_id:
            self._start_workflow_task(msg, cached, msg.events)
            return
        # A task for a run this worker has not cached (or has out of step): replay its
        # history, asked for page by page.
        self._evict(msg.run_id)
        self._awaiting_history[msg.token] = msg
        self._history_pages[msg.token] = []
        self._request_history(msg, 1)

    def _request_history(self, task: WorkflowTask, first_event_id: int) -> None:
        msg_id = self._next_id()

        def on_reply(reply: Ack | Error) -> None:
            if isinstance(reply, Error):
                _log_refusal("the history request", task, reply)
                self._awaiting_history.pop(task.token, None)
                self._history_pages.pop(task.token, None)

        frame = HistoryRequest(token=task.token, first_event_id=first_event_id, id=msg_id)
        self._send_tracked(frame.encode(), msg_id, on_reply)

    def _handle_history(self, msg: History) -> None:
        if msg.id is not None:
            self._unacked.pop(msg.id, None)
        if msg.token in self._query_pages:
            self._query_history(msg)
            return
        task = self._awaiting_history.get(msg.token)
        pages = self._history_pages.get(msg.token)
        if task is None or pages is None:
            logger.warning("ignoring history for a task the worker is not waiting for")
            return
        pages.extend(msg.events)
        if msg.more and msg.events:
            self._request_history(task, int(msg.events[-1]["event_id"]) + 1)
            return
        del self._awaiting_history[msg.token]
        del self._history_pages[msg.token]
        _warn_if_long(task, pages)
        definition = self._workflows[task.workflow_type]
        self._start_workflow_task(task, self._new_instance(task, definition), pages)

    def _new_instance(self, msg: WorkflowTask, definition: WorkflowDefinition) -> WorkflowInstance:
        return WorkflowInstance(
            definition,
            workflow_id=msg.workflow_id,
            run_id=msg.run_id,
            workflow_type=msg.workflow_type,
            task_queue=msg.task_queue,
            failure_exception_types=self._failure_types,
        )

    def _start_workflow_task(
        self, msg: WorkflowTask, inst: WorkflowInstance, events: list[WireEvent]
    ) -> None:
        """Run the workflow task in an asyncio task of its own; the run is out of the cache
        meanwhile (mid-activation, it is not for another task)."""
        self._evict(msg.run_id)
        token = msg.token
        deadline = time.monotonic() + self._local_budget
        inst.history_length, inst.history_size_bytes = msg.history_length, msg.history_size_bytes
        task = asyncio.create_task(self._run_workflow_task(msg, inst, events, deadline))
        self._workflow_runs[token] = task

        def done(_t: asyncio.Task[None]) -> None:
            self._workflow_runs.pop(token, None)
            self._progress.set()

        task.add_done_callback(done)

    async def _run_workflow_task(
        self, msg: WorkflowTask, inst: WorkflowInstance, events: list[WireEvent],
        deadline: float,
    ) -> None:
        """Activate the run, run the local activities it pauses on until its commands are
        ready, and answer the engine."""
        try:
            events = await self._converter.decode_events(events)
            res = await self._activation(msg, inst, lambda: inst.activate(events))
            while res is not None and res.local_activities:
                batch = res.local_activities
                missing = [r.activity_type for r in batch
                           if r.activity_type not in self._activities]
                if missing:
                    self._fail_workflow_task(msg, "unknown_activity_type", ApplicationError(
                        f"activity type {missing[0]!r} is not registered on this worker",
                        type="ActivityNotRegisteredError"))
                    return
                outcomes = await asyncio.gather(
                    *(self._run_local_activity(msg, r, deadline) for r in batch))
                by_seq = {o.seq: o for o in outcomes}
                res = await self._activation(
                    msg, inst, functools.partial(inst.resolve_local_activities, by_seq))
        except asyncio.CancelledError:
            logger.debug("workflow task of %s dropped: the worker is stopping", msg.workflow_id,
                         extra=_run_fields(msg))
            raise  # the engine times the task out and schedules it again
        except Exception as exc:
            logger.exception("workflow task of %s failed in the worker", msg.workflow_id,
                             extra=_run_fields(msg))
            self._fail_workflow_task(msg, "worker_error", exc)
            return
        if res is None:  # deadlocked, and failed already
            return
        if res.commands is not None:
            try:
                res.commands = await self._converter.encode_commands(res.commands)
            except Exception as exc:
                self._evict(msg.run_id)
                self._fail_workflow_task(msg, "unserializable_commands", exc)
                return
        self._complete_activation(msg, inst, res)

    async def _activation(
        self, msg: WorkflowTask, inst: WorkflowInstance, run: Callable[[], ActivationResult]
    ) -> ActivationResult | None:
        """One activation in its own thread, traced; None if it deadlocked (the workflow task
        is failed with cause ``deadlock_detected`` and the instance dropped)."""
        attributes: dict[str, str | int | bool] = {
            "sched.workflow_id": msg.workflow_id, "sched.run_id": msg.run_id,
            "sched.workflow_type": msg.workflow_type, "sched.task_queue": msg.task_queue,
            "sched.attempt": msg.attempt, "sched.sticky": msg.first_event_id > 1}
        with span(f"workflow_task {msg.workflow_type}", msg.traceparent, attributes) as current:
            outcome = await run_activation(run, inst, deadlock_timeout=self._deadlock_timeout)
            if isinstance(outcome, Deadlock):
                current.fail(f"deadlock_detected: {outcome.location}")
                self._evict(msg.run_id)
                self._send_workflow_failure(msg, "deadlock_detected",
                                            outcome.failure(msg.workflow_type, msg.workflow_id))
                return None
            if outcome.local_activities is None and (outcome.failure is not None
                                                     or outcome.commands is None):
                current.fail(f"{outcome.cause}: {(outcome.failure or {}).get('message', '')}")
        return outcome

    async def _run_local_activity(
        self, msg: WorkflowTask, request: LocalActivityRequest, task_deadline: float
    ) -> LocalActivityOutcome:
        """Every attempt of one local activity, under its timeouts and retry policy."""
        assert self._loop is not None
        loop = self._loop
        definition = self._activities[request.activity_type]
        policy = request.retry_policy
        started = time.monotonic()
        deadline = task_deadline
        if request.schedule_to_close_ms is not None:
            deadline = min(deadline, started + request.schedule_to_close_ms / 1000)
        attempt_limit = (math.inf if request.start_to_close_ms is None
                         else request.start_to_close_ms / 1000)
        attributes: dict[str, str | int | bool] = {
            "sched.workflow_id": msg.workflow_id, "sched.run_id": msg.run_id,
            "sched.workflow_type": msg.workflow_type, "sched.activity_type": request.activity_type,
            "sched.activity_id": str(request.seq), "sched.task_queue": msg.task_queue,
            "sched.local": True}
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            timeout_type: str | None = None
            failure: WireFailure | None = None
            info = ActivityInfo(
                workflow_id=msg.workflow_id, run_id=msg.run_id, workflow_type=msg.workflow_type,
                activity_id=str(request.seq), activity_type=request.activity_type,
                task_queue=msg.task_queue, attempt=attempt, scheduled_at=None,
                heartbeat_timeout=None, start_to_close_timeout=None
                if request.start_to_close_ms is None else request.start_to_close_ms / 1000,
                is_local=True)
            ctx = ActivityContext(info, loop=loop, send=lambda _details: None)
            with span(f"local_activity {request.activity_type}", msg.traceparent,
                      {**attributes, "sched.attempt": attempt}) as current:
                if remaining <= 0:
                    timeout_type = "schedule_to_close"
                else:
                    try:
                        done, result = await self._attempt_local(
                            definition, ctx, request.input, min(attempt_limit, remaining))
                    except asyncio.CancelledError:
                        raise
                    except BaseException as exc:
                        failure = failure_from_exception(exc)
                    else:
                        if done:
                            try:
                                result = to_json(result)
                                json.dumps(result)
                            except (TypeError, ValueError) as err:
                                failure = failure_from_exception(ApplicationError(
                                    f"the activity's result is not JSON-serializable: {err}",
                                    type="SerializationError", non_retryable=True))
                            else:
                                return LocalActivityOutcome(request.seq, result=result,
                                                            attempts=attempt)
                        else:
                            timeout_type = ("start_to_close" if attempt_limit < remaining
                                            else "schedule_to_close")
                if timeout_type is not None:
                    failure = {"type": "TimeoutError",
                               "message": f"local activity {timeout_type} timeout",
                               "details": {"timeout_type": timeout_type}}
                assert failure is not None
                current.fail(f"{failure.get('type')}: {failure.get('message', '')}")
            if timeout_type == "schedule_to_close":  # out of time: no retry
                made = attempt if remaining > 0 else attempt - 1
                return LocalActivityOutcome(request.seq, failure=failure, attempts=made,
                                            timeout_type=timeout_type)
            delay = _retry_delay(policy, attempt, failure)
            if delay is None or time.monotonic() + delay >= deadline:
                return LocalActivityOutcome(request.seq, failure=failure, attempts=attempt,
                                            timeout_type=timeout_type)
            await asyncio.sleep(delay)

    async def _attempt_local(
        self, definition: ActivityDefinition, ctx: ActivityContext, input: Any, limit: float
    ) -> tuple[bool, Any]:
        """One attempt: (True, result), or (False, None) when ``limit`` seconds pass first (a
        sync activity's thread runs on to its end; its result is dropped)."""
        assert self._loop is not None
        future: asyncio.Future[Any]
        input = from_json(input, input_hint(definition.fn))
        if definition.is_async:
            future = asyncio.ensure_future(definition.fn(ctx, input))
        else:
            future = self._loop.run_in_executor(
                self._executor, contextvars.copy_context().run, definition.fn, ctx, input)
        try:
            done, _ = await asyncio.wait({future}, timeout=None if math.isinf(limit) else limit)
        except asyncio.CancelledError:
            ctx._cancel()
            future.cancel()
            raise
        if not done:
            ctx._cancel()
            future.cancel()
            return False, None
        return True, future.result()

    def _complete_activation(
        self, msg: WorkflowTask, inst: WorkflowInstance, res: ActivationResult
    ) -> None:
        commands, failure, cause = res.commands, res.failure, res.cause
        if failure is not None or commands is None:
            self._evict(msg.run_id)
            self._send_workflow_failure(msg, cause or "worker_error",
                                        failure or {"type": "Error", "message": "no commands"})
            return
        msg_id = self._next_id()
        try:
            frame = WorkflowTaskCompleted(token=msg.token, commands=commands, id=msg_id).encode()
        except Exception as exc:
            self._evict(msg.run_id)
            self._fail_workflow_task(msg, "unserializable_commands", exc)
            return
        too_large = self._too_large(frame, "the workflow task's commands")
        if too_large is not None:
            self._evict(msg.run_id)
            self._fail_workflow_task(msg, PAYLOAD_TOO_LARGE, too_large)
            return
        inst.eager_ready = False
        if _closes_run(commands):
            self._evict(msg.run_id)
        else:
            self._remember(msg.run_id, inst)

        def on_reply(reply: Ack | Error) -> None:
            if isinstance(reply, Error):
                _log_refusal("the completion of a workflow task", msg, reply)
                if self._cache.get(msg.run_id) is inst:
                    self._evict(msg.run_id)
            else:
                self._take_events(msg.run_id, inst, reply.events)

        self._send_tracked(frame, msg_id, on_reply, resend=True, token=msg.token)

    def _fail_workflow_task(self, msg: WorkflowTask, cause: str, exc: BaseException) -> None:
        self._send_workflow_failure(msg, cause, failure_from_exception(exc))

    def _send_workflow_failure(self, msg: WorkflowTask, cause: str, failure: WireFailure) -> None:
        logger.warning("workflow task of %s %r (run %s, attempt %s) failed: %s: %s",
                       msg.workflow_type, msg.workflow_id, msg.run_id, msg.attempt, cause,
                       _failure_lines(failure), extra={**_run_fields(msg), "cause": cause})
        msg_id = self._next_id()
        frame = WorkflowTaskFailedMsg(
            token=msg.token, cause=cause[:MAX_NAME_LENGTH], failure=failure, id=msg_id
        ).encode()

        def on_reply(reply: Ack | Error) -> None:
            if isinstance(reply, Error):
                _log_refusal("the failure of a workflow task", msg, reply)

        self._send_tracked(frame, msg_id, on_reply, resend=True, token=msg.token)

    def _take_events(self, run_id: str, inst: WorkflowInstance,
                     events: list[WireEvent] | None) -> None:
        """The ack of a completion of ``inst``'s workflow task, with the events the completion
        appended (None: the next task of the run brings them): the cached copy takes them
        (the commands' events are matched as a sticky task's first events are) and then knows
        the whole history."""
        if events and self._cache.get(run_id) is inst:
            task = asyncio.create_task(self._apply_events(run_id, inst, events, self._conn))
            self._event_runs.add(task)
            task.add_done_callback(self._event_runs.discard)

    async def _apply_events(self, run_id: str, inst: WorkflowInstance,
                            events: list[WireEvent], conn: _Connection | None) -> None:
        try:
            decoded = await self._converter.decode_events(events)
        except Exception:
            logger.debug("could not decode the events of an ack", exc_info=True)
            decoded = None
        if self._cache.get(run_id) is not inst:
            return  # a task of the run took the copy meanwhile, or it was dropped
        # No WorkflowTaskStarted among them: no workflow code runs, nothing blocks.
        if (decoded is None or inst.next_event_id != decoded[0].get("event_id")
                or inst.activate(decoded).failure is not None):
            self._evict(run_id)  # out of step: the next task replays the history
            return
        inst.history_size_bytes += _history_bytes(events)
        # The events came over ``conn``: a later session is not the run's sticky worker.
        inst.eager_ready = conn is not None and self._conn is conn

    def _remember(self, run_id: str, inst: WorkflowInstance) -> None:
        if self._max_cached == 0:
            return
        self._cache[run_id] = inst
        self._cache.move_to_end(run_id)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)

    def _evict(self, run_id: str) -> None:
        self._cache.pop(run_id, None)

    # ---- queries (sdk._queries) ----------------------------------------------------------

    def _handle_query_task(self, msg: QueryTask) -> None:
        """Answer from the cached instance if it is current, else replay the run's history
        (asked for page by page) in a fresh instance, off the loop."""
        if msg.workflow_type not in self._workflows:
            self._answer_query(msg.token, QueryAnswer(
                error="unknown_workflow_type",
                message=f"workflow type {msg.workflow_type!r} is not registered on this worker"))
            return
        cached = self._cache.get(msg.run_id)
        # Current: it ran the run's last task, or took the events an ack brought and so knows
        # the history through the query's (a query read before that commit may be behind it;
        # its replay would answer from before the task, an older state than one answered).
        if (cached is not None and msg.sticky_next_event_id
                and (cached.next_event_id == msg.sticky_next_event_id
                     or (cached.eager_ready
                         and cached.next_event_id >= msg.sticky_next_event_id))):
            # In the cache, an instance is between activations: nothing else runs it now.
            answer = _ask(cached, msg)
            if answer.changed:
                self._evict(msg.run_id)
            self._answer_query(msg.token, answer)
            return
        events = list(msg.events)
        if len(events) < msg.history_length:
            self._query_pages[msg.token] = (msg, events)
            self._request_query_history(msg.token, len(events) + 1)
            return
        self._start_query(msg, events)

    def _request_query_history(self, token: str, first_event_id: int) -> None:
        msg_id = self._next_id()

        def on_reply(reply: Ack | Error) -> None:
            if isinstance(reply, Error) and self._query_pages.pop(token, None) is not None:
                logger.debug("the engine refused a query's history: %s: %s", reply.code,
                             reply.message)

        frame = HistoryRequest(token=token, first_event_id=first_event_id, id=msg_id)
        self._send_tracked(frame.encode(), msg_id, on_reply)

    def _query_history(self, msg: History) -> None:
        task, events = self._query_pages[msg.token]
        events.extend(msg.events)
        if msg.more and msg.events:
            self._request_query_history(msg.token, int(msg.events[-1]["event_id"]) + 1)
            return
        del self._query_pages[msg.token]
        self._start_query(task, events)

    def _start_query(self, msg: QueryTask, events: list[WireEvent]) -> None:
        task = asyncio.create_task(self._replay_query(msg, events))
        self._query_runs.add(task)  # held: the loop keeps only weak references to tasks
        task.add_done_callback(self._query_runs.discard)

    async def _replay_query(self, msg: QueryTask, events: list[WireEvent]) -> None:
        """Replay in a fresh instance (in a thread, watched for deadlocks as activations
        are), answer, and drop the instance. Never raises."""
        try:
            answer = await self._replayed_answer(msg, events)
        except Exception as exc:
            logger.exception("a query of %s failed in the worker", msg.workflow_id)
            answer = QueryAnswer(error=QUERY_FAILED, message=f"the worker failed: {exc!r}")
        self._answer_query(msg.token, answer)

    async def _replayed_answer(self, msg: QueryTask, events: list[WireEvent]) -> QueryAnswer:
        definition = self._workflows[msg.workflow_type]
        inst = WorkflowInstance(definition, workflow_id=msg.workflow_id, run_id=msg.run_id,
                                workflow_type=msg.workflow_type, task_queue=msg.task_queue,
                                failure_exception_types=self._failure_types)
        replay = history_for_query(events)
        if not ran(replay):
            return NOT_RUN_YET if not msg.update_validation else QueryAnswer(
                error=NOT_RUN_YET_CODE, message=NOT_RUN_YET.message)
        answers: list[QueryAnswer] = []

        def run() -> ActivationResult:
            res = inst.activate(replay)
            if res.failure is None and res.local_activities is None:
                answers.append(_ask(inst, msg))
            return res

        outcome = await run_activation(run, inst, deadlock_timeout=self._deadlock_timeout)
        if isinstance(outcome, Deadlock):
            return QueryAnswer(error=QUERY_FAILED, message=(
                f"replaying the run to answer the query did not yield for "
                f"{outcome.seconds:g} s; blocked at {outcome.location}"))
        if answers:
            return answers[0]
        failure = outcome.failure or {}
        return QueryAnswer(error=QUERY_FAILED, message=(
            f"could not replay the run to answer the query: {outcome.cause or 'error'}: "
            f"{failure.get('type', 'Error')}: {failure.get('message', '')}"))

    def _answer_query(self, token: str, answer: QueryAnswer) -> None:
        frame = QueryResult(token=token, result=answer.result, error=answer.error,
                            message=answer.message[:MAX_ERROR_MESSAGE_LENGTH]).encode()
        too_large = self._too_large(frame, "the query's result")
        if too_large is not None:
            frame = QueryResult(token=token, error=QUERY_FAILED, message=str(too_large)).encode()
        self._send_frame(frame)

    # ---- activities --------------------------------------------------------------------

    def _handle_activity_task(self, msg: ActivityTask) -> None:
        if msg.token in self._running:
            logger.warning("ignoring a duplicate activity task for %s", msg.activity_id,
                           extra=_run_fields(msg))
            return
        assert self._loop is not None
        info = ActivityInfo(
            workflow_id=msg.workflow_id,
            run_id=msg.run_id,
            workflow_type=msg.workflow_type,
            activity_id=msg.activity_id,
            activity_type=msg.activity_type,
            task_queue=msg.task_queue,
            attempt=msg.attempt,
            scheduled_at=parse_timestamp(msg.scheduled_at),
            heartbeat_timeout=msg.heartbeat_timeout,
            start_to_close_timeout=msg.start_to_close_timeout,
            task_token=msg.token,
        )
        token = msg.token
        ctx = ActivityContext(
            info,
            heartbeat_details=msg.heartbeat_details,
            loop=self._loop,
            send=lambda details: self._send_heartbeat(token, details),
        )
        running = _RunningActivity(ctx)
        self._running[token] = running
        running.task = asyncio.create_task(self._run_activity(msg, running))
        running.task.add_done_callback(lambda _t: self._activity_done(token))

    def _activity_done(self, token: str) -> None:
        self._running.pop(token, None)
        self._progress.set()

    def _handle_activity_cancel(self, msg: ActivityCancel) -> None:
        running = self._running.get(msg.token)
        if running is None:
            return
        self._cancel_activity(running)

    def _cancel_activity(self, running: _RunningActivity) -> None:
        running.ctx._cancel()
        if running.inner is not None:
            running.inner.cancel()

    def _send_heartbeat(self, token: str, details: Any) -> None:
        running = self._running.get(token)
        if running is None or self._conn is None:
            return
        details = to_json(details)
        if self._converter.codec is None:
            self._send_heartbeat_frame(token, running, details)
            return
        # Encoded in order: each heartbeat waits for the one before it.
        previous = running.heartbeat
        running.heartbeat = asyncio.ensure_future(
            self._encode_heartbeat(previous, token, running, details))

    async def _encode_heartbeat(self, previous: asyncio.Future[None] | None, token: str,
                                running: _RunningActivity, details: Any) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            encoded = await self._converter.encode(details)
        except Exception as exc:
            logger.warning("dropping a heartbeat whose details the codec cannot encode: %r",
                           exc, extra=_run_fields(running.ctx.info))
            return
        if self._running.get(token) is running and self._conn is not None:
            self._send_heartbeat_frame(token, running, encoded)

    def _send_heartbeat_frame(self, token: str, running: _RunningActivity, details: Any
                              ) -> None:
        msg_id = self._next_id()
        try:
            frame = ActivityHeartbeat(token=token, details=details, id=msg_id).encode()
        except Exception as exc:
            logger.warning("dropping a heartbeat whose details are not JSON: %r", exc)
            return
        too_large = self._too_large(frame, "the heartbeat's details")
        if too_large is not None:  # the attempt fails with it, stopped at its next heartbeat
            logger.warning("%s", too_large, extra=_run_fields(running.ctx.info))
            if running.refused is None:
                running.refused = failure_from_exception(too_large)
            self._cancel_activity(running)
            return

        def on_reply(reply: Ack | Error) -> None:
            if isinstance(reply, Ack) and reply.cancel_requested:
                self._cancel_activity(running)
            elif isinstance(reply, Error):
                logger.log(_refusal_level(reply, running.ctx),
                           "engine rejected a heartbeat: %s: %s", reply.code, reply.message)

        self._send_tracked(frame, msg_id, on_reply)

    async def _run_activity(self, msg: ActivityTask, running: _RunningActivity) -> None:
        assert self._slots is not None
        async with self._slots:
            attributes: dict[str, str | int | bool] = {
                "sched.workflow_id": msg.workflow_id, "sched.run_id": msg.run_id,
                "sched.workflow_type": msg.workflow_type, "sched.activity_type": msg.activity_type,
                "sched.activity_id": msg.activity_id, "sched.task_queue": msg.task_queue,
                "sched.attempt": msg.attempt}
            with span(f"activity {msg.activity_type}", msg.traceparent, attributes) as current:
                failure = await self._attempt_activity(msg, running)
                if failure is not None:
                    current.fail(f"{failure.get('type')}: {failure.get('message', '')}")

    async def _attempt_activity(
        self, msg: ActivityTask, running: _RunningActivity
    ) -> WireFailure | None:
        """Run one attempt and send its outcome. Returns the failure sent, if any."""
        assert self._loop is not None
        ctx = running.ctx
        definition = self._activities.get(msg.activity_type)
        if definition is None:
            failure = failure_from_exception(ApplicationError(
                f"activity type {msg.activity_type!r} is not registered on this worker",
                type="ActivityNotRegisteredError",
            ))
            self._finish_activity(msg.token, ctx, failure=failure)
            return failure
        try:
            input = await self._activity_input(definition, msg, ctx)
            if definition.is_async:
                result = await self._run_async_activity(definition, running, input)
            else:
                # In a copy of this context: spans the activity starts are the attempt's.
                result = await self._loop.run_in_executor(
                    self._executor, contextvars.copy_context().run, definition.fn, ctx,
                    input,
                )
        except asyncio.CancelledError:
            ctx._flush()
            raise  # the worker itself is stopping: the engine re-delivers the task
        except CompleteAsync:
            if running.refused is None:
                await self._hand_off(msg.token, running)
                return None
            failure = running.refused
            await self._finish_encoded(msg.token, running, failure=failure)
            return failure
        except BaseException as exc:  # SystemExit from an activity's thread is its failure too
            failure = running.refused or failure_from_exception(exc)
            await self._finish_encoded(msg.token, running, failure=failure,
                                       canceled=running.refused is None
                                       and isinstance(exc, ActivityCancelledError))
            return failure
        if running.refused is not None:
            await self._finish_encoded(msg.token, running, failure=running.refused)
            return running.refused
        return await self._finish_encoded(msg.token, running, result=result)

    async def _hand_off(self, token: str, running: _RunningActivity) -> None:
        """The activity raised ``CompleteAsync``: once its last heartbeat went out, tell the
        engine that outside code completes it."""
        running.ctx._flush()
        if running.heartbeat is not None:
            await asyncio.gather(running.heartbeat, return_exceptions=True)
        msg_id = self._next_id()

        def on_reply(reply: Ack | Error) -> None:
            if isinstance(reply, Error):
                logger.warning("engine refused the async hand-off of %s: %s: %s",
                               running.ctx.info.activity_id, reply.code, reply.message,
                               extra=_run_fields(running.ctx.info))

        self._send_tracked(ActivityTaskAsync(token=token, id=msg_id).encode(), msg_id,
                           on_reply, resend=True, token=token)

    async def _activity_input(self, definition: ActivityDefinition, msg: ActivityTask,
                              ctx: ActivityContext) -> Any:
        """The attempt's input (and the last heartbeat's details) decoded and rebuilt as the
        activity function's ``input`` hint; ``PayloadConversionError`` if they cannot be."""
        try:
            input = await self._converter.decode(msg.input)
            ctx._heartbeat_details = await self._converter.decode(msg.heartbeat_details)
        except PayloadConversionError:
            raise
        except Exception as exc:
            raise PayloadConversionError(f"the payload codec cannot decode the activity's "
                                         f"input: {exc!r}") from exc
        return from_json(input, input_hint(definition.fn))

    async def _finish_encoded(self, token: str, running: _RunningActivity, *,
                              result: Any = None, failure: WireFailure | None = None,
                              canceled: bool = False) -> WireFailure | None:
        """Send the attempt's outcome once its last heartbeat went out, its result converted
        to JSON and its payloads encoded. Returns the failure sent, if any."""
        running.ctx._flush()
        if running.heartbeat is not None:
            await asyncio.gather(running.heartbeat, return_exceptions=True)
        try:
            if failure is None:
                result = await self._converter.encode(to_json(result))
            else:
                failure = await self._converter.encode_failure(failure)
        except Exception as exc:
            failure = failure_from_exception(ApplicationError(
                f"the activity's {'failure' if failure else 'result'} cannot be encoded: {exc}",
                type="SerializationError", non_retryable=True))
        eager = None
        if failure is None:
            try:
                eager = await self._eager_task(running.ctx.info, result)
            except asyncio.CancelledError:  # stopping: the result still goes out
                self._finish_activity(token, running.ctx, result=result)
                raise
        self._finish_activity(token, running.ctx, result=result, failure=failure,
                              canceled=canceled, eager=eager)
        return failure

    async def _eager_task(self, info: ActivityInfo, result: JSONValue) -> _Eager | None:
        """The run's next workflow task, run here on the activity's ``result`` (the module's
        docstring), or None when it cannot be: the run is not cached here with its whole
        history, or the task needs anything but its commands (a local activity, a failure).
        The copy of the run is out of the cache meanwhile, and dropped if the task is not
        run to its commands (the engine then sends the task as usual)."""
        inst = self._cache.get(info.run_id)
        if not self._eager or inst is None or not inst.eager_ready:
            return None
        try:
            seq = int(info.activity_id)
        except ValueError:
            return None
        try:  # as the history will hold it: JSON (string keys), and not the object sent
            stored = json.loads(json.dumps(result))
        except (TypeError, ValueError):
            return None  # the completion fails to encode anyway
        self._evict(info.run_id)
        inst.eager_ready = False
        first = inst.next_event_id
        started_at = datetime.now(UTC).isoformat()
        # The events the engine will append, as far as the workflow code sees them: the
        # activity's outcome (by seq) and the task's start (its time).
        events: list[WireEvent] = [
            {"event_id": first + i, "event_type": kind.value, "timestamp": started_at,
             "attributes": attributes}
            for i, (kind, attributes) in enumerate((
                (EventType.ACTIVITY_TASK_STARTED, {"seq": seq, "attempt": info.attempt}),
                (EventType.ACTIVITY_TASK_COMPLETED, {"seq": seq, "result": stored}),
                (EventType.WORKFLOW_TASK_SCHEDULED, {"task_queue": inst.task_queue,
                                                     "attempt": 1}),
                (EventType.WORKFLOW_TASK_STARTED, {"attempt": 1})))]
        inst.history_size_bytes += _history_bytes(events)
        try:
            decoded = await self._converter.decode_events(events)
            outcome = await run_activation(lambda: inst.activate(decoded), inst,
                                           deadlock_timeout=self._deadlock_timeout)
            if (isinstance(outcome, Deadlock) or outcome.failure is not None
                    or outcome.commands is None or outcome.local_activities):
                return None  # the task, sent as usual, replays and meets it again
            commands = await self._converter.encode_commands(outcome.commands)
        except Exception:
            logger.debug("the eager workflow task of %s was not run", info.workflow_id,
                         exc_info=True)
            return None
        return _Eager(info.run_id, inst, {"first_event_id": first, "started_at": started_at,
                                          "commands": commands})

    async def _run_async_activity(
        self, definition: ActivityDefinition, running: _RunningActivity, input: Any
    ) -> Any:
        inner = asyncio.ensure_future(definition.fn(running.ctx, input))
        running.inner = inner
        if running.ctx.is_cancelled():
            inner.cancel()
        try:
            await asyncio.wait({inner})
        except asyncio.CancelledError:
            inner.cancel()
            raise
        if inner.cancelled():
            raise ActivityCancelledError("the activity was cancelled")
        return inner.result()

    def _finish_activity(
        self,
        token: str,
        ctx: ActivityContext,
        *,
        result: JSONValue = None,
        failure: WireFailure | None = None,
        canceled: bool = False,
        eager: _Eager | None = None,
    ) -> None:
        ctx._flush()  # the last heartbeat's details go out before the completion
        msg_id = self._next_id()
        frame: str | None = None
        if eager is not None:
            try:
                frame = ActivityTaskCompleted(token=token, result=result, id=msg_id,
                                              workflow_task=eager.proposal).encode()
            except Exception:  # its commands do not serialize: the task fails as usual
                frame = None
            if frame is not None and self._too_large(frame, "") is not None:
                frame = None
            if self._cache.get(eager.run_id) is not None:
                frame = None  # a task of the run ran meanwhile: the run moved on
            if frame is None:
                eager = None
        if failure is None and frame is None:
            try:
                frame = ActivityTaskCompleted(token=token, result=result, id=msg_id).encode()
            except Exception as exc:
                failure = failure_from_exception(
                    ApplicationError(f"the activity's result is not JSON-serializable: {exc}",
                                     type="SerializationError", non_retryable=True)
                )
            else:
                too_large = self._too_large(frame, "the activity's result")
                if too_large is not None:
                    frame, failure = None, failure_from_exception(too_large)
        if frame is None:
            assert failure is not None
            frame = ActivityTaskFailedMsg(
                token=token, failure=failure, canceled=canceled, id=msg_id
            ).encode()
            too_large = self._too_large(frame, "the activity's failure")
            if too_large is not None:  # its details, most likely: send the failure without
                frame = ActivityTaskFailedMsg(
                    token=token, failure=failure_from_exception(too_large), id=msg_id
                ).encode()

        def on_reply(reply: Ack | Error) -> None:
            if isinstance(reply, Error):
                logger.log(_refusal_level(reply, ctx),
                           "engine rejected an activity completion (%s): %s: %s",
                           ctx.info.activity_id, reply.code, reply.message,
                           extra=_run_fields(ctx.info))
            if eager is None:
                return
            # The copy is cached once the engine took its task (the ack's events), not before:
            # until then no query or task may see what may not become history. If the engine
            # did not take it, the task comes as usual and replays.
            if (isinstance(reply, Ack) and reply.events and not eager.terminal
                    and self._cache.get(eager.run_id) is None):
                self._remember(eager.run_id, eager.inst)
                self._take_events(eager.run_id, eager.inst, reply.events)

        self._send_tracked(frame, msg_id, on_reply, resend=True, token=token)

    def _too_large(self, frame: str, what: str) -> ApplicationError | None:
        """The ``payload_too_large`` error of ``frame`` if the engine would refuse it."""
        limit = self._max_frame_bytes
        size = frame_size(frame)
        if limit is None or size <= limit:
            return None
        return ApplicationError(
            f"{what} would go in a frame of {size} bytes, more than the engine takes ({limit} "
            "bytes, SCHED_MAX_PAYLOAD_BYTES)", type=PAYLOAD_TOO_LARGE)

    def _abandon_activities(self) -> None:
        for task in list(self._workflow_runs.values()):
            task.cancel()
        for running in list(self._running.values()):
            self._cancel_activity(running)
            if running.task is not None:
                running.task.cancel()


def _history_bytes(events: list[WireEvent]) -> int:
    """The bytes ``events`` add to the run's history, counted as the engine counts them."""
    return sum(event_bytes(e.get("attributes")) for e in events)


def _closes_run(commands: list[Any]) -> bool:
    """Whether a workflow task's ``commands`` close the run (its copy has nothing to keep)."""
    return any(isinstance(c, dict) and c.get("kind") in TERMINAL_KINDS for c in commands)


def _retry_delay(policy: RetryPolicy, attempt: int, failure: WireFailure) -> float | None:
    """Seconds to wait before retrying a local activity, or None: it failed for good."""
    if failure.get("non_retryable") or failure.get("type") in policy.non_retryable_error_types:
        return None
    if policy.maximum_attempts and attempt >= policy.maximum_attempts:
        return None
    return policy.backoff_ms(attempt) / 1000


def _failure_lines(failure: WireFailure, lines: int = 4) -> str:
    """The first lines of a failure, for a log line: its type and message, and where it was
    raised (the innermost frame of its stack)."""
    text = f"{failure.get('type') or 'Error'}: {failure.get('message') or ''}"
    head = text.splitlines()[:lines]
    stack = [line for line in str(failure.get("stack") or "").splitlines() if line.strip()]
    frames = [i for i, line in enumerate(stack) if line.lstrip().startswith('File "')]
    if frames:
        head.append(" ".join(part.strip() for part in stack[frames[-1]:frames[-1] + 2]))
    return " | ".join(head)


def _refusal_level(reply: Error, ctx: ActivityContext) -> int:
    """How loud the engine's refusal of an activity's frame is: after the engine cancelled
    the activity (its run closed, or the workflow cancelled it), a ``stale_task`` answer is
    the normal end of the attempt (DEBUG); any other refusal is worth a warning."""
    return logging.DEBUG if reply.code == "stale_task" and ctx.is_cancelled() \
        else logging.WARNING


def _log_refusal(what: str, msg: WorkflowTask, reply: Error) -> None:
    """The engine refused a workflow task's answer or history request: a stale task (the
    engine moved on, e.g. it timed the task out) is normal, anything else is worth a
    warning."""
    level = logging.DEBUG if reply.code == "stale_task" else logging.WARNING
    logger.log(level, "engine rejected %s of %s: %s: %s", what, msg.workflow_id, reply.code,
               reply.message, extra=_run_fields(msg))


def _warn_if_long(task: WorkflowTask, events: list[WireEvent]) -> None:
    """Log a warning for a history past ``HISTORY_WARN_EVENTS`` events or
    ``HISTORY_WARN_BYTES`` bytes: the run should continue as new."""
    size = len(json.dumps(events, separators=(",", ":")))
    if len(events) <= HISTORY_WARN_EVENTS and size <= HISTORY_WARN_BYTES:
        return
    logger.warning("workflow %s has a long history (%d events, %d bytes): continue it as new",
                   task.workflow_id, len(events), size, extra=_run_fields(task))


def _run_fields(task: WorkflowTask | ActivityTask | ActivityInfo) -> dict[str, str]:
    """The ``extra`` of a log line about one run: its ids, as structured log fields."""
    return {"workflow_id": task.workflow_id, "run_id": task.run_id}


def _ask(instance: WorkflowInstance, msg: QueryTask) -> QueryAnswer:
    """What a ``query_task`` asks of the instance: a query, or an update's validation."""
    if msg.update_validation:
        return instance.validate_update(msg.query_name, list(msg.args))
    return instance.query(msg.query_name, list(msg.args))
