"""The lean path of the two hottest REST calls: start a run, and wait for its result.

``POST /api/workflows`` and ``GET /api/workflows/{id}/result`` are what every client of the
engine calls for every run. Through Django's ASGI handler each costs a new thread (the
request's own ``ThreadSensitiveContext``), a thread hop per middleware and DRF's request
cycle, which under load was most of the engine's CPU. ``LeanApi`` wraps the engine's HTTP
application and answers these two itself when the request is the plain, valid case:

- the work that touches the database (authenticate the token, validate the body or query,
  start the run or read it) runs as one unit on one of the API's database threads
  (``schedproject.dbthread.DbPool``, connections of their own), with the same serializers,
  services and selectors as the DRF views; nothing of the validation or of the service is
  written twice;
- a result's wait holds no thread: it awaits the commit that closes the run
  (``workflows.changes.watch_async``, which also sees other engine processes' commits),
  re-reading the run then;
- the answer is rendered by DRF's renderer, with the headers Django's middleware would add.

A query (``POST /api/workflows/{id}/queries/{name}``) is answered here too: its request is
validated and its run read as one unit on a database thread, then ``dispatch.queries.ask``
awaits the worker's answer holding no thread (its reads of the worker sessions and the
history go to the same threads). Once a worker has been asked, every outcome is answered
here, errors included (``no_worker``, ``query_not_found``...), in the view's error body:
falling back would ask again.

A start's options (``id_conflict_policy``, signal-with-start) are the view's too: the same
service call, answered 201 when it started the run and 200 when it found the run open (a
signal-with-start that signalled it, in the unit's transaction).

Anything else, including every error (no or bad token, a body that does not validate, a
start refused with 409: ``workflow_already_started``, ``workflow_type_mismatch``..., an
unknown run, a body without ``Content-Length`` or over the limit), goes on to Django
unchanged, its body replayed: the answer is then the DRF view's. A unit that
falls back has written nothing (a refused start rolls back). With tracing on
(``SCHED_OTLP_ENDPOINT``), or ``SCHED_LEAN_API=0``, every request goes to Django (its spans
and middleware are the reference). The requests answered here are counted in the same
``django_http_*`` metrics as the rest.

Process state: the API's database threads (``_pool``, made on first use).
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import QueryDict
from django.http.request import split_domain_port, validate_host
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer

from dispatch import queries
from schedproject import config, tracing
from schedproject.dbthread import DbPool
from workflows import changes, selectors
from workflows.core.state import Status
from workflows.errors import SchedError
from workflows.models import Execution

from . import waiters
from .auth import authenticate_header
from .errors import error_body
from .parsers import decode_json
from .views import (
    PathSerializer,
    WorkflowQueryApi,
    WorkflowResultApi,
    WorkflowsApi,
    query_wait_seconds,
    result_body,
    run_location,
    start_answer,
    start_status,
    start_workflow,
)

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

START_PATH = "/api/workflows"
RESULT_PATH = re.compile(r"^/api/workflows/(.+)/result$", re.DOTALL)
QUERY_PATH = re.compile(r"^/api/workflows/(.+)/queries/(.+)$", re.DOTALL)
_renderer = JSONRenderer()
_pool: DbPool | None = None
_pool_lock = threading.Lock()


def db_pool() -> DbPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DbPool("api", config.get().db_threads)
        return _pool


@dataclass(frozen=True)
class Answer:
    status: int
    data: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Fallback(Exception):
    """The request is not the plain case: Django answers it."""


def _authenticate(headers: dict[bytes, bytes]) -> None:
    header = headers.get(b"authorization", b"").decode("latin-1")
    try:
        if authenticate_header(header) is None:
            raise Fallback
    except (exceptions.APIException, UnicodeError) as exc:
        raise Fallback from exc


_serializers = threading.local()  # one instance of each input serializer per API thread


def _valid(serializer_class: type[Any], data: Any) -> dict[str, Any]:
    """``data`` validated by ``serializer_class``; ``Fallback`` if it does not validate.

    Each API thread keeps one instance of the class and gives it each body in turn: a new
    instance deep-copies its declared fields, which was the larger part of a start's
    validation. Validating leaves nothing of one body on the instance but the attributes
    cleared here (``is_valid`` keeps its answer in ``_validated_data``, ``_errors``)."""
    cache: dict[type[Any], Any] = _serializers.__dict__.setdefault("by_class", {})
    serializer = cache.get(serializer_class)
    if serializer is None:
        serializer = cache[serializer_class] = serializer_class()
    for attribute in ("_validated_data", "_errors", "_data"):
        serializer.__dict__.pop(attribute, None)
    serializer.initial_data = data
    try:
        if not serializer.is_valid():
            raise Fallback
        return dict(serializer.validated_data)
    finally:
        del serializer.initial_data


# ---- the units of work, on the API's database threads ----------------------------------------


def start_unit(headers: dict[bytes, bytes], body: bytes) -> Answer:
    _authenticate(headers)
    try:
        data = decode_json(body)
    except (ValueError, RecursionError) as exc:
        raise Fallback from exc
    try:
        outcome = start_workflow(_valid(WorkflowsApi.StartInputSerializer, data))
    except SchedError as exc:  # refused (409 and the like): rolled back, Django answers it
        raise Fallback from exc
    return Answer(start_status(outcome), start_answer(outcome),
                  ((b"location", run_location(outcome.execution).encode("latin-1")),
                   (b"allow", b"GET, POST, HEAD, OPTIONS")))


@dataclass(frozen=True)
class ResultQuery:
    workflow_id: str
    run_id: str | None
    wait: float


def result_unit(headers: dict[bytes, bytes], workflow_id: str,
                query_string: bytes) -> tuple[ResultQuery, Execution]:
    _authenticate(headers)
    _valid(PathSerializer, {"workflow_id": workflow_id})
    try:
        query_dict = QueryDict(query_string.decode("latin-1"))
    except UnicodeError as exc:
        raise Fallback from exc
    query = _valid(WorkflowResultApi.ResultQuerySerializer, query_dict)
    try:
        run = selectors.execution_result(workflow_id=workflow_id,
                                         run_id=query.get("run_id"))
    except SchedError as exc:  # not found, and the like
        raise Fallback from exc
    return ResultQuery(workflow_id, query.get("run_id"), query["wait"]), run


def follow_unit(run: Execution) -> Execution:
    return selectors.follow_chain(run)
def query_unit(headers: dict[bytes, bytes], workflow_id: str, name: str,
               body: bytes) -> tuple[queries.Target, list[Any]]:
    """The run a plain query asks, and its arguments; ``Fallback`` for anything else (Django
    answers it: nothing was asked of a worker yet)."""
    _authenticate(headers)
    _valid(PathSerializer, {"workflow_id": workflow_id})
    _valid(WorkflowQueryApi.QueryNameSerializer, {"name": name})
    try:
        data = decode_json(body)
    except (ValueError, RecursionError) as exc:
        raise Fallback from exc
    query = _valid(WorkflowQueryApi.QueryInputSerializer, data)
    try:
        target = queries.query_target(workflow_id=workflow_id, run_id=query.get("run_id"))
    except SchedError as exc:  # not found
        raise Fallback from exc
    return target, list(query["args"])


def reread_unit(run: Execution) -> Execution:
    run.refresh_from_db(fields=["status", "result", "failure", "closed_at"])
    return run


def result_answer(run: Execution) -> Answer:
    return Answer(200, result_body(run),
                  ((b"allow", b"GET, HEAD, OPTIONS"),))


# ---- the ASGI side ------------------------------------------------------------------------------


class LeanApi:
    """Wraps the engine's HTTP application (see the module's docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or tracing.enabled() or not config.get().lean_api:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if not _plain(scope, dict(scope["headers"])):
            await self.app(scope, receive, send)
        elif method == "POST" and path == START_PATH:
            await self._start(scope, receive, send)
        elif method == "GET" and (match := RESULT_PATH.match(path)) is not None:
            await self._result(scope, receive, send, match.group(1))
        elif method == "POST" and (match := QUERY_PATH.match(path)) is not None:
            await self._query(scope, receive, send, match.group(1), match.group(2))
        else:
            await self.app(scope, receive, send)

    async def _start(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        body, complete = await _read_body(headers, receive)
        if complete and _is_json(headers):
            try:
                answer = await asyncio.wrap_future(db_pool().submit(start_unit, headers, body))
            except Fallback:
                pass
            else:
                await _respond(send, answer, "workflows", "POST", started)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _result(self, scope: Scope, receive: Receive, send: Send,
                      workflow_id: str) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        pool = db_pool()
        try:
            query, run = await asyncio.wrap_future(
                pool.submit(result_unit, headers, workflow_id, scope["query_string"]))
        except Fallback:
            await self.app(scope, receive, send)
            return
        if run.status == Status.RUNNING.value and query.wait > 0:
            deadline = time.monotonic() + query.wait
            try:
                with waiters.slot(query.wait):  # bounded as the view's waits are
                    while (run.status == Status.RUNNING.value
                           and (remaining := deadline - time.monotonic()) > 0):
                        closed = await _until_closed(pool, run, remaining, receive)
                        if closed is None:
                            return  # the caller went away
                        # A continue-as-new: wait on for the run it continued as, as the view.
                        run = await asyncio.wrap_future(pool.submit(follow_unit, closed))
            except waiters.TooManyWaiters:
                await self.app(scope, receive, send)  # the view answers 503 (or, freed, waits)
                return
        await _respond(send, result_answer(run), "workflow-result", "GET", started)


    async def _query(self, scope: Scope, receive: Receive, send: Send, workflow_id: str,
                     name: str) -> None:
        """A query: validated and its run read on a database thread, then asked of a worker
        with no thread held while it waits (``dispatch.queries.ask``)."""
        started = time.perf_counter()
        headers = dict(scope["headers"])
        body, complete = await _read_body(headers, receive)
        pool = db_pool()
        if complete and _is_json(headers):
            try:
                target, args = await asyncio.wrap_future(
                    pool.submit(query_unit, headers, workflow_id, name, body))
            except Fallback:
                pass
            else:
                try:
                    with waiters.slot(query_wait_seconds()):
                        result = await queries.ask(target, name=name, args=args,
                                                   run_db=_pooled(pool))
                except waiters.TooManyWaiters:
                    pass  # the view answers 503 (or, freed, asks)
                except SchedError as exc:
                    await _respond(send, Answer(exc.http_status, error_body(
                        exc.code, exc.message, **exc.extra), QUERY_ALLOW), "workflow-query",
                        "POST", started)
                    return
                else:
                    await _respond(send, Answer(200, {"result": result}, QUERY_ALLOW),
                                   "workflow-query", "POST", started)
                    return
        await self.app(scope, _replay(body, receive), send)


QUERY_ALLOW = ((b"allow", b"POST, OPTIONS"),)


def _pooled(pool: DbPool) -> queries.RunDb:
    async def run_db(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.wrap_future(pool.submit(fn, *args, **kwargs))
    return run_db


async def _until_closed(pool: DbPool, run: Execution, wait: float,
                        receive: Receive) -> Execution | None:
    """``run`` once it has closed, or as it is when ``wait`` seconds have passed; None if the
    caller disconnected first."""
    deadline = time.monotonic() + wait
    disconnected = asyncio.ensure_future(_disconnect(receive))
    try:
        with changes.watch_async(run.pk, closing_only=True) as watch:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return run
                # Woken by the run's closing commit, here or (the poller) in another process.
                await watch.wait_async(remaining)
                if disconnected.done():
                    return None
                watch.clear()  # before the read: a commit after it wakes the next wait
                run = await asyncio.wrap_future(pool.submit(reread_unit, run))
                if run.status != Status.RUNNING.value:
                    return run
    finally:
        disconnected.cancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@functools.cache
def _common_headers() -> tuple[tuple[bytes, bytes], ...]:
    """What Django's middleware adds to an API answer over plain HTTP (SecurityMiddleware,
    XFrameOptionsMiddleware), from the settings."""
    out = [(b"x-frame-options", settings.X_FRAME_OPTIONS.encode())]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        out.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        text = policy if isinstance(policy, str) else ",".join(policy)
        out.append((b"referrer-policy", text.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        out.append((b"cross-origin-opener-policy",
                    settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    return tuple(out)


def _plain(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """A request whose answer Django's middleware would not change: plain HTTP (no HTTPS
    redirect or HSTS to apply), and a ``Host`` that ``ALLOWED_HOSTS`` allows."""
    if scope.get("scheme") != "http" or settings.SECURE_SSL_REDIRECT:
        return False
    if settings.SECURE_PROXY_SSL_HEADER or settings.USE_X_FORWARDED_HOST:
        return False
    host = headers.get(b"host", b"").decode("latin-1")
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def _is_json(headers: dict[bytes, bytes]) -> bool:
    media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return media == b"application/json"


async def _read_body(headers: dict[bytes, bytes], receive: Receive) -> tuple[bytes, bool]:
    """The body, if it declares a length within the limit and is read whole; else what was
    read (``False``: Django decides, with the same limits)."""
    declared = headers.get(b"content-length", b"")
    if not declared.isdigit() or int(declared) > config.get().max_payload_bytes:
        return b"", False
    length = int(declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > length:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), size == length


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first gives back the body already read (as one message)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


async def _respond(send: Send, answer: Answer, view: str, method: str,
                   started: float) -> None:
    payload = _renderer.render(answer.data)
    await send({"type": "http.response.start", "status": answer.status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *answer.headers, *_common_headers()]})
    await send({"type": "http.response.body", "body": payload})
    _count(view, method, answer.status, time.perf_counter() - started)


def _count(view: str, method: str, status: int, seconds: float) -> None:
    """The ``django_http_*`` metrics django-prometheus's middleware keeps for the others."""
    try:
        from django_prometheus.middleware import Metrics
    except ImportError:  # metrics are optional
        return
    metrics = Metrics.get_instance()
    code = str(status)
    metrics.requests_total.inc()
    metrics.responses_total.inc()
    metrics.requests_latency_before.observe(seconds)
    metrics.requests_by_method.labels(method=method).inc()
    metrics.requests_by_transport.labels(transport="http").inc()
    metrics.requests_by_view_transport_method.labels(view=view, transport="http",
                                                     method=method).inc()
    metrics.responses_by_status.labels(status=code).inc()
    metrics.responses_by_status_view_method.labels(status=code, view=view,
                                                   method=method).inc()
    metrics.requests_latency_by_view_method.labels(view=view, method=method).observe(seconds)
