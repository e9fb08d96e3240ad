"""Clients for the engine's REST API: ``Client`` (sync, httpx) and ``AsyncClient``.

Both are thin: each method builds one request (the shared ``_*_request`` helpers below), and
one function (``_raise_for_error``) maps every HTTP error to ``SchedAPIError`` with the
engine's machine-readable ``code``. ``result()`` long-polls the result endpoint, at most 60 s
per request, and follows continue-as-new chains to the latest run.

Payloads: inputs (start, signal) are converted to JSON (``to_json``: dataclasses, pydantic
models) and, with a ``payload_codec``, encoded; a result and a failure's details are decoded,
and the result is rebuilt as ``result_type`` (given to ``result()``/``get_workflow_handle()``,
or the return annotation of the workflow function given to ``start_workflow``).

Starts: ``start_workflow(..., id_conflict_policy="use_existing")`` answers with the open run
of its workflow id, and ``start_signal=`` makes it a signal-with-start; the handle's
``started`` says which (the answer's ``started``: 201 started, 200 found open).

Retries: a start and a signal carry a ``request_id`` (a new UUID per call), so the engine
answers a repeat like the first and writes nothing new; those and the reads (GET) are sent
again, up to ``retries`` times with exponential back-off, when the connection fails or the
engine answers 5xx (it is restarting, or a proxy in front of it has no engine). Cancel and
terminate are sent once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from sdk._converter import PayloadCodec, PayloadConverter, from_json, return_hint, to_json
from sdk._errors import SchedError, WorkflowFailureError, failure_from_exception

__all__ = [
    "AsyncActivityHandle",
    "AsyncClient",
    "AsyncClientActivityHandle",
    "AsyncWorkflowHandle",
    "Client",
    "SchedAPIError",
    "WorkflowAlreadyStartedError",
    "WorkflowHandle",
    "WorkflowUpdateFailedError",
]

MAX_WAIT_PER_REQUEST = 60.0
DEFAULT_RETRIES = 6
RETRY_BASE_DELAY = 0.1
RETRY_MAX_DELAY = 2.0
FAILED_STATUSES = frozenset({"failed", "canceled", "terminated", "timed_out"})


class SchedAPIError(SchedError):
    """The engine answered an API call with an HTTP error."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message


class WorkflowAlreadyStartedError(SchedAPIError):
    """A workflow with this id is already running (``run_id`` is the open run)."""

    def __init__(self, status_code: int, code: str, message: str, run_id: str | None) -> None:
        super().__init__(status_code, code, message)
        self.run_id = run_id


class WorkflowUpdateFailedError(SchedAPIError):
    """The update's handler failed the update (422 ``update_failed``): ``failure`` is the
    failure it raised (an ``ApplicationError``'s type, message, details). The run goes on."""

    def __init__(self, status_code: int, code: str, message: str,
                 failure: dict[str, Any] | None) -> None:
        super().__init__(status_code, code, message)
        self.failure = failure


# ---- request building and response parsing (shared by both clients) -------------------


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    timeout: float | None = None  # overrides the client's timeout (long polls)
    retry: bool = False  # safe to send again: it carries a request_id

    @property
    def retryable(self) -> bool:
        return self.retry or self.method == "GET"


def _retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential, with jitter."""
    delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2.0 ** attempt)
    return delay * random.uniform(0.5, 1.0)


def _should_retry(req: _Request, attempt: int, retries: int,
                  response: httpx.Response | None) -> bool:
    """Whether to send ``req`` again after ``attempt`` failed (``response`` None: the
    connection failed)."""
    if not req.retryable or attempt >= retries:
        return False
    return response is None or response.status_code >= 500


def _request_id() -> str:
    return uuid.uuid4().hex


def _path(workflow_id: str, suffix: str = "") -> str:
    return f"/api/workflows/{quote(workflow_id, safe='')}{suffix}"


def _workflow_type_name(workflow_type: Any) -> str:
    if isinstance(workflow_type, str):
        return workflow_type
    definition = getattr(workflow_type, "__sched_workflow__", None)
    name = getattr(definition, "name", None)
    if isinstance(name, str):
        return name
    name = getattr(workflow_type, "name", None)  # a WorkflowDefinition itself
    if isinstance(name, str):
        return name
    raise TypeError(f"{workflow_type!r} is not a workflow type: pass a name or a @workflow")


ID_CONFLICT_POLICIES = ("fail", "use_existing")


@dataclass(frozen=True, slots=True)
class _StartOptions:
    """What a start asks beside its workflow and input (``start_workflow``'s keywords)."""

    workflow_id: str | None = None
    task_queue: str = "default"
    execution_timeout: float | None = None
    id_conflict_policy: str | None = None
    start_signal: str | None = None

    def check(self, start_signal_input: Any) -> None:
        policy = self.id_conflict_policy
        if policy is not None and policy not in ID_CONFLICT_POLICIES:
            raise ValueError(f"id_conflict_policy must be 'fail' or 'use_existing', "
                             f"not {policy!r}")
        if self.start_signal is None and start_signal_input is not None:
            raise ValueError("start_signal_input needs start_signal")
        if self.start_signal is not None and policy == "fail":
            raise ValueError("a signal-with-start (start_signal) signals an open run: its "
                             "id_conflict_policy is 'use_existing', not 'fail'")


def _start_request(workflow_type: Any, input: Any, options: _StartOptions,
                   signal_input: Any) -> _Request:
    body: dict[str, Any] = {
        "workflow_type": _workflow_type_name(workflow_type),
        "input": input,
        "task_queue": options.task_queue,
    }
    if options.workflow_id is not None:
        body["workflow_id"] = options.workflow_id
    if options.execution_timeout is not None:
        body["execution_timeout"] = options.execution_timeout
    if options.id_conflict_policy is not None:
        body["id_conflict_policy"] = options.id_conflict_policy
    if options.start_signal is not None:
        body["start_signal"] = options.start_signal
        body["start_signal_input"] = signal_input
    body["request_id"] = _request_id()
    return _Request("POST", "/api/workflows", json=body, retry=True)


def _started(body: Mapping[str, Any]) -> bool:
    """A start's answer: whether it started the run (an engine from before ``started``
    answered only starts that did)."""
    return body.get("started", True) is not False


def _result_hint(workflow_type: Any, result_type: Any) -> Any:
    """``result_type``, else the return annotation of a workflow function, else ``Any``."""
    if result_type is not None:
        return result_type
    definition = getattr(workflow_type, "__sched_workflow__", workflow_type)
    fn = getattr(definition, "fn", None)
    return return_hint(fn) if callable(fn) else Any


def _decoded_body_sync(converter: PayloadConverter, body: dict[str, Any]) -> dict[str, Any]:
    """A result body with its result and failure decoded (sync codec path)."""
    if converter.codec is None:
        return body
    decoded = {**body, "result": converter.decode_sync(body.get("result"))}
    if isinstance(body.get("failure"), Mapping):
        decoded["failure"] = converter.decode_failure_sync(body["failure"])
    return decoded


async def _decoded_body(converter: PayloadConverter, body: dict[str, Any]) -> dict[str, Any]:
    """A result body with its result and failure decoded."""
    if converter.codec is None:
        return body
    decoded = {**body, "result": await converter.decode(body.get("result"))}
    if isinstance(body.get("failure"), Mapping):
        decoded["failure"] = await converter.decode_failure(body["failure"])
    return decoded


def _activity_request(task_token: str, action: str, body: dict[str, Any]) -> _Request:
    """A call on an async-completed activity; sent once (a repeat of a completion that
    went through is answered ``stale_task``)."""
    return _Request("POST", f"/api/activities/{quote(task_token, safe='')}/{action}",
                    json=body)


def _cancel_requested(response: httpx.Response) -> bool:
    return bool(_object(response).get("cancel_requested"))


def _signal_request(workflow_id: str, name: str, input: Any) -> _Request:
    return _Request("POST", _path(workflow_id, "/signals"), retry=True,
                    json={"name": name, "input": input, "request_id": _request_id()})


def _run_params(run_id: str | None) -> dict[str, Any]:
    return {"run_id": run_id} if run_id else {}


def _result_request(workflow_id: str, run_id: str | None, wait: float, timeout: float) -> _Request:
    params = {"wait": _fmt_seconds(wait), **_run_params(run_id)}
    return _Request("GET", _path(workflow_id, "/result"), params=params, timeout=wait + timeout)


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _reason_body(reason: str | None) -> dict[str, Any]:
    return {"reason": reason} if reason is not None else {}


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    body = _json_or_none(response)
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        code = str(error.get("code") or f"http_{response.status_code}")
        message = str(error.get("message") or response.reason_phrase)
    else:
        code = f"http_{response.status_code}"
        message = response.text[:500] or response.reason_phrase
    if code == "workflow_already_started":
        run_id = error.get("run_id") if isinstance(error, Mapping) else None
        raise WorkflowAlreadyStartedError(
            response.status_code, code, message, run_id if isinstance(run_id, str) else None
        )
    if code == "update_failed":
        failure = error.get("failure") if isinstance(error, Mapping) else None
        raise WorkflowUpdateFailedError(response.status_code, code, message,
                                        dict(failure) if isinstance(failure, Mapping) else None)
    raise SchedAPIError(response.status_code, code, message)


def _body(response: httpx.Response) -> Any:
    _raise_for_error(response)
    if not response.content:
        return None
    body = _json_or_none(response)
    if body is None:
        raise SchedAPIError(response.status_code, "invalid_response", "the body is not JSON")
    return body


def _object(response: httpx.Response) -> dict[str, Any]:
    body = _body(response)
    if not isinstance(body, dict):
        raise SchedAPIError(response.status_code, "invalid_response", "expected a JSON object")
    return body


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def _base_url(engine_url: str) -> str:
    return engine_url.rstrip("/")


@dataclass(slots=True)
class _ResultPoll:
    """The state of one ``result()`` call: which run, until when. Pure, no I/O."""

    workflow_id: str
    run_id: str | None
    deadline: float | None

    def next_wait(self) -> float:
        if self.deadline is None:
            return MAX_WAIT_PER_REQUEST
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"workflow {self.workflow_id!r} did not close in time")
        return min(MAX_WAIT_PER_REQUEST, remaining)

    def outcome(self, body: Mapping[str, Any]) -> tuple[bool, Any]:
        """``(True, result)`` once closed; ``(False, None)`` to poll again. Raises failures."""
        status = body.get("status")
        if status == "completed":
            return True, body.get("result")
        if status in FAILED_STATUSES:
            failure = body.get("failure")
            raise WorkflowFailureError(str(status), failure if isinstance(failure, dict) else {})
        return False, None

    def follow(self, described: Mapping[str, Any]) -> None:
        """Move to the latest run after a continue-as-new."""
        latest = described.get("run_id")
        if not isinstance(latest, str) or latest == self.run_id:
            raise SchedAPIError(200, "invalid_response",
                                "the run continued as new but no newer run is visible")
        self.run_id = latest


# ---- queries and listing (shared) ------------------------------------------------------

# The filters ``GET /api/workflows`` takes besides ``status`` and ``workflow_type``.
LIST_FILTERS = frozenset({"task_queue", "workflow_id"})


def _query_request(workflow_id: str, run_id: str | None, name: str,
                   args: tuple[Any, ...]) -> _Request:
    """``POST .../queries/{name}``: sent once (a 504 ``no_worker`` has already waited)."""
    if not isinstance(name, str) or not name:
        raise ValueError("the query name must be a non-empty string")
    body: dict[str, Any] = {"args": list(args), **_run_params(run_id)}
    return _Request("POST", _path(workflow_id, f"/queries/{quote(name, safe='')}"), json=body)


UPDATE_WAIT_MARGIN = 60.0  # past the client's timeout: the engine waits up to ~45 s by default


def _update_request(workflow_id: str, run_id: str | None, name: str, args: tuple[Any, ...],
                    update_id: str | None, timeout: float) -> _Request:
    """``POST .../updates/{name}``: sent once; asked again under the same ``update_id`` it is
    answered by the first update's outcome (or waits on for it)."""
    if not isinstance(name, str) or not name:
        raise ValueError("the update name must be a non-empty string")
    if update_id is not None and (not isinstance(update_id, str) or not update_id):
        raise ValueError("update_id must be a non-empty string or None")
    body: dict[str, Any] = {"args": [to_json(a) for a in args],
                            "update_id": update_id or _request_id(), **_run_params(run_id)}
    return _Request("POST", _path(workflow_id, f"/updates/{quote(name, safe='')}"), json=body,
                    timeout=timeout + UPDATE_WAIT_MARGIN)


def _query_result(response: httpx.Response) -> Any:
    return _object(response).get("result")


def _list_params(status: str | None, workflow_type: str | None,
                 query: str | Mapping[str, str] | None, page_size: int) -> dict[str, Any]:
    """The query string of the first page of ``list_workflows``."""
    params: dict[str, Any] = {"page_size": page_size}
    if status is not None:
        params["status"] = status
    if workflow_type is not None:
        params["workflow_type"] = _workflow_type_name(workflow_type)
    if isinstance(query, str):
        params["query"] = query
        return params
    for key, value in (query or {}).items():
        if key not in LIST_FILTERS:
            raise ValueError(f"list_workflows cannot filter on {key!r}: query takes "
                             f"{', '.join(sorted(LIST_FILTERS))}")
        params[key] = value
    return params


def _list_page(body: Mapping[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of one page; sets ``params["cursor"]`` for the next, or drops it at the end."""
    cursor = body.get("next_cursor")
    if isinstance(cursor, str) and cursor:
        params["cursor"] = cursor
    else:
        params.pop("cursor", None)
    items = body.get("items")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


# ---- sync ---------------------------------------------------------------------------


class Client:
    """A synchronous client for the engine's REST API."""

    def __init__(
        self,
        engine_url: str,
        *,
        token: str,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = DEFAULT_RETRIES,
        payload_codec: PayloadCodec | None = None,
    ) -> None:
        self._converter = PayloadConverter(payload_codec)
        self.timeout = timeout
        self.retries = max(0, retries)
        self._http = httpx.Client(
            base_url=_base_url(engine_url), headers=_headers(token), timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, req: _Request) -> httpx.Response:
        timeout = req.timeout if req.timeout is not None else self.timeout
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(req.method, req.path, params=req.params or None,
                                              json=req.json, timeout=timeout)
            except httpx.TransportError:
                if not _should_retry(req, attempt, self.retries, None):
                    raise
            else:
                if not _should_retry(req, attempt, self.retries, response):
                    return response
            time.sleep(_retry_delay(attempt))
        raise AssertionError("unreachable")

    def start_workflow(
        self,
        workflow_type: Any,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        task_queue: str = "default",
        execution_timeout: float | None = None,
        id_conflict_policy: str | None = None,
        start_signal: str | None = None,
        start_signal_input: Any = None,
        result_type: Any = None,
    ) -> WorkflowHandle:
        """Start a workflow run; raises ``WorkflowAlreadyStartedError`` if one is open.

        ``id_conflict_policy="use_existing"``: if ``workflow_id`` has an open run, the
        handle is that run's (``handle.started`` False) instead of an error; an open run of
        another workflow type or task queue raises ``SchedAPIError`` with ``code``
        ``workflow_type_mismatch`` or ``task_queue_mismatch``.

        ``start_signal`` (signal-with-start): signal the open run with
        ``start_signal_input``, or start the run with that signal recorded right after its
        start, so its first workflow task sees it (the policy is ``"use_existing"``).

        ``result_type`` (or, when ``workflow_type`` is the workflow function, its return
        annotation) is what the handle's ``result()`` rebuilds the result as."""
        options = _StartOptions(workflow_id, task_queue, execution_timeout,
                                id_conflict_policy, start_signal)
        options.check(start_signal_input)
        payload = self._converter.encode_sync(to_json(input))
        signal_payload = (None if start_signal is None
                          else self._converter.encode_sync(to_json(start_signal_input)))
        body = _object(self._call(_start_request(workflow_type, payload, options,
                                                 signal_payload)))
        return WorkflowHandle(self, str(body["workflow_id"]), str(body["run_id"]),
                              result_type=_result_hint(workflow_type, result_type),
                              started=_started(body))

    def execute_workflow(
        self,
        workflow_type: Any,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        task_queue: str = "default",
        execution_timeout: float | None = None,
        id_conflict_policy: str | None = None,
        start_signal: str | None = None,
        start_signal_input: Any = None,
        result_type: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """``start_workflow(...)`` then ``result(timeout)``: the run's result (with
        ``use_existing`` or a signal-with-start, the open run's result)."""
        handle = self.start_workflow(
            workflow_type, input, workflow_id=workflow_id, task_queue=task_queue,
            execution_timeout=execution_timeout, id_conflict_policy=id_conflict_policy,
            start_signal=start_signal, start_signal_input=start_signal_input,
            result_type=result_type)
        return handle.result(timeout)

    def execute_update_with_start(
        self,
        update: str,
        *args: Any,
        workflow_type: Any,
        input: Any = None,
        workflow_id: str,
        task_queue: str = "default",
        execution_timeout: float | None = None,
        id_conflict_policy: str = "use_existing",
        update_id: str | None = None,
        result_type: Any = None,
    ) -> Any:
        """Update-with-start: start ``workflow_type`` as ``workflow_id`` (or, by
        ``id_conflict_policy="use_existing"``, the default, take its open run), then run its
        update ``update`` with ``args`` and return the update's result, as
        ``handle.execute_update`` does (its errors included). The run is there whatever the
        update's outcome: ``get_workflow_handle(workflow_id)`` reaches it. Two requests: a
        retry of the whole call starts nothing twice (``use_existing``) and, with the same
        ``update_id`` (default: one drawn here), runs the update once."""
        if not workflow_id:
            raise ValueError("execute_update_with_start needs a workflow_id")
        update_id = update_id or str(uuid.uuid4())
        handle = self.start_workflow(
            workflow_type, input, workflow_id=workflow_id, task_queue=task_queue,
            execution_timeout=execution_timeout, id_conflict_policy=id_conflict_policy)
        return handle.execute_update(update, *args, update_id=update_id,
                                     result_type=result_type)

    def get_workflow_handle(self, workflow_id: str, run_id: str | None = None, *,
                            result_type: Any = None) -> WorkflowHandle:
        return WorkflowHandle(self, workflow_id, run_id, result_type=result_type)

    def list_workflows(self, status: str | None = None, workflow_type: Any = None,
                       query: str | Mapping[str, str] | None = None, *,
                       page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Runs, newest first, fetched page by page as the iteration goes: exact filters on
        ``status`` and ``workflow_type`` (a name or a ``@workflow``), and ``query``: a list
        filter in Temporal's syntax (``"WorkflowType = 'charge' AND ExecutionStatus =
        'Running'"``, docs/sdk.md), or a mapping of exact filters (``task_queue``,
        ``workflow_id``). A query the engine cannot parse raises ``SchedAPIError``
        ``invalid_query``. Each run is ``GET /api/workflows``' item."""
        params = _list_params(status, workflow_type, query, page_size)
        while True:
            body = _object(self._call(_Request("GET", "/api/workflows", params=dict(params))))
            yield from _list_page(body, params)
            if "cursor" not in params:
                return

    def get_async_activity_handle(self, task_token: str) -> AsyncActivityHandle:
        """The activity attempt ``task_token`` names (``ActivityInfo.task_token`` of an
        activity that raised ``sdk.CompleteAsync``), to complete, fail or heartbeat it."""
        return AsyncActivityHandle(self, task_token)


class AsyncActivityHandle:
    """An activity completed from outside its worker (``sdk.CompleteAsync``). Each call
    raises ``SchedAPIError``: 404 ``activity_not_found`` for an unknown token, 409
    ``stale_task`` once the attempt is over (completed, failed, timed out, retried)."""

    def __init__(self, client: Client, task_token: str) -> None:
        self.client = client
        self.task_token = task_token

    def complete(self, result: Any = None) -> None:
        payload = self.client._converter.encode_sync(to_json(result))
        _body(self.client._call(_activity_request(self.task_token, "complete",
                                                  {"result": payload})))

    def fail(self, error: BaseException) -> None:
        """Fail the attempt with ``error`` (retried per the activity's retry policy unless
        it is a non-retryable ``ApplicationError``)."""
        failure = failure_from_exception(error)
        failure = self.client._converter.encode_failure_sync(failure)
        _body(self.client._call(_activity_request(self.task_token, "fail",
                                                  {"failure": failure})))

    def heartbeat(self, details: Any = None) -> bool:
        """Record progress; returns whether the workflow asked the activity to cancel."""
        payload = self.client._converter.encode_sync(to_json(details))
        return _cancel_requested(self.client._call(
            _activity_request(self.task_token, "heartbeat", {"details": payload})))



class WorkflowHandle:
    """One workflow (and, if ``run_id`` is set, one of its runs)."""

    def __init__(self, client: Client, workflow_id: str, run_id: str | None = None, *,
                 result_type: Any = None, started: bool | None = None) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.result_type = result_type
        # From ``start_workflow``: whether it started the run (False: the run was already
        # open, ``use_existing`` or a signal-with-start); None for ``get_workflow_handle``.
        self.started = started

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r}, run_id={self.run_id!r})"

    def result(self, timeout: float | None = None, *, result_type: Any = None) -> Any:
        """Wait for the run to close; its result (rebuilt as ``result_type`` or the handle's),
        or ``WorkflowFailureError``/``TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = _ResultPoll(self.workflow_id, self.run_id, deadline)
        while True:
            wait = poll.next_wait()
            req = _result_request(self.workflow_id, poll.run_id, wait, self.client.timeout)
            body = _decoded_body_sync(self.client._converter, _object(self.client._call(req)))
            closed, result = poll.outcome(body)
            if closed:
                return from_json(result, result_type or self.result_type)
            if body.get("status") == "continued_as_new":
                poll.follow(self._describe(None))

    def signal(self, name: str, input: Any = None) -> None:
        payload = self.client._converter.encode_sync(to_json(input))
        _body(self.client._call(_signal_request(self.workflow_id, name, payload)))

    def query(self, name: str, *args: Any) -> Any:
        """The value the run's query handler ``name`` returns for ``args`` (open or closed
        runs). ``SchedAPIError`` with ``code`` ``query_not_found``, ``query_failed``,
        ``no_worker`` or ``query_timeout`` when there is none."""
        return _query_result(self.client._call(
            _query_request(self.workflow_id, self.run_id, name, args)))

    def execute_update(self, name: str, *args: Any, update_id: str | None = None,
                       result_type: Any = None) -> Any:
        """Run the workflow's update handler ``name`` with ``args`` and return its result
        (rebuilt as ``result_type``). ``update_id`` (default: a new one) makes it idempotent:
        the same id again returns the first outcome. Raises ``SchedAPIError`` with ``code``
        ``update_rejected`` (the validator refused; nothing was recorded),
        ``update_not_found``, ``run_closed``, ``no_worker`` or ``update_timeout``, and
        ``WorkflowUpdateFailedError`` (``update_failed``) when the handler failed it."""
        req = _update_request(self.workflow_id, self.run_id, name, args, update_id,
                              self.client.timeout)
        converter = self.client._converter
        try:
            body = _object(self.client._call(req))
        except WorkflowUpdateFailedError as err:
            if err.failure is not None and converter.codec is not None:
                err.failure = converter.decode_failure_sync(err.failure)
            raise
        return from_json(converter.decode_sync(body.get("result")), result_type)

    def cancel(self, reason: str | None = None) -> None:
        _body(self.client._call(_Request("POST", _path(self.workflow_id, "/cancel"),
                                         json=_reason_body(reason))))

    def terminate(self, reason: str | None = None) -> None:
        _body(self.client._call(_Request("POST", _path(self.workflow_id, "/terminate"),
                                         json=_reason_body(reason))))

    def describe(self) -> dict[str, Any]:
        return self._describe(self.run_id)

    def _describe(self, run_id: str | None) -> dict[str, Any]:
        return _object(self.client._call(
            _Request("GET", _path(self.workflow_id), params=_run_params(run_id))
        ))

    def history(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        after: int | None = None
        while True:
            params = _run_params(self.run_id)
            if after is not None:
                params["after"] = after
            body = _object(self.client._call(
                _Request("GET", _path(self.workflow_id, "/history"), params=params)
            ))
            events.extend(body.get("events") or [])
            next_after = body.get("next_after")
            if next_after is None or next_after == after:
                return events
            after = int(next_after)


# ---- async --------------------------------------------------------------------------


class AsyncClient:
    """The asynchronous twin of ``Client`` (same methods, awaitable)."""

    def __init__(
        self,
        engine_url: str,
        *,
        token: str,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = DEFAULT_RETRIES,
        payload_codec: PayloadCodec | None = None,
    ) -> None:
        self._converter = PayloadConverter(payload_codec)
        self.timeout = timeout
        self.retries = max(0, retries)
        self._http = httpx.AsyncClient(
            base_url=_base_url(engine_url), headers=_headers(token), timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _call(self, req: _Request) -> httpx.Response:
        timeout = req.timeout if req.timeout is not None else self.timeout
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.request(
                    req.method, req.path, params=req.params or None, json=req.json,
                    timeout=timeout)
            except httpx.TransportError:
                if not _should_retry(req, attempt, self.retries, None):
                    raise
            else:
                if not _should_retry(req, attempt, self.retries, response):
                    return response
            await asyncio.sleep(_retry_delay(attempt))
        raise AssertionError("unreachable")

    async def start_workflow(
        self,
        workflow_type: Any,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        task_queue: str = "default",
        execution_timeout: float | None = None,
        id_conflict_policy: str | None = None,
        start_signal: str | None = None,
        start_signal_input: Any = None,
        result_type: Any = None,
    ) -> AsyncWorkflowHandle:
        """Start a workflow run; raises ``WorkflowAlreadyStartedError`` if one is open.
        ``id_conflict_policy`` and ``start_signal``: as ``Client.start_workflow``'s."""
        options = _StartOptions(workflow_id, task_queue, execution_timeout,
                                id_conflict_policy, start_signal)
        options.check(start_signal_input)
        payload = await self._converter.encode(to_json(input))
        signal_payload = (None if start_signal is None
                          else await self._converter.encode(to_json(start_signal_input)))
        body = _object(await self._call(_start_request(workflow_type, payload, options,
                                                       signal_payload)))
        return AsyncWorkflowHandle(self, str(body["workflow_id"]), str(body["run_id"]),
                                   result_type=_result_hint(workflow_type, result_type),
                                   started=_started(body))

    async def execute_workflow(
        self,
        workflow_type: Any,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        task_queue: str = "default",
        execution_timeout: float | None = None,
        id_conflict_policy: str | None = None,
        start_signal: str | None = None,
        start_signal_input: Any = None,
        result_type: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 (= sync API)
    ) -> Any:
        """``Client.execute_workflow``, awaitable."""
        handle = await self.start_workflow(
            workflow_type, input, workflow_id=workflow_id, task_queue=task_queue,
            execution_timeout=execution_timeout, id_conflict_policy=id_conflict_policy,
            start_signal=start_signal, start_signal_input=start_signal_input,
            result_type=result_type)
        return await handle.result(timeout)

    async def execute_update_with_start(
        self,
        update: str,
        *args: Any,
        workflow_type: Any,
        input: Any = None,
        workflow_id: str,
        task_queue: str = "default",
        execution_timeout: float | None = None,
        id_conflict_policy: str = "use_existing",
        update_id: str | None = None,
        result_type: Any = None,
    ) -> Any:
        """``Client.execute_update_with_start``, awaitable."""
        if not workflow_id:
            raise ValueError("execute_update_with_start needs a workflow_id")
        update_id = update_id or str(uuid.uuid4())
        handle = await self.start_workflow(
            workflow_type, input, workflow_id=workflow_id, task_queue=task_queue,
            execution_timeout=execution_timeout, id_conflict_policy=id_conflict_policy)
        return await handle.execute_update(update, *args, update_id=update_id,
                                           result_type=result_type)

    def get_workflow_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: Any = None
    ) -> AsyncWorkflowHandle:
        return AsyncWorkflowHandle(self, workflow_id, run_id, result_type=result_type)

    async def list_workflows(self, status: str | None = None, workflow_type: Any = None,
                             query: str | Mapping[str, str] | None = None, *,
                             page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        """``Client.list_workflows``, iterated with ``async for``."""
        params = _list_params(status, workflow_type, query, page_size)
        while True:
            body = _object(await self._call(
                _Request("GET", "/api/workflows", params=dict(params))))
            for item in _list_page(body, params):
                yield item
            if "cursor" not in params:
                return

    def get_async_activity_handle(self, task_token: str) -> AsyncClientActivityHandle:
        """The asynchronous twin of ``Client.get_async_activity_handle``."""
        return AsyncClientActivityHandle(self, task_token)


class AsyncClientActivityHandle:
    """The asynchronous twin of ``AsyncActivityHandle``."""

    def __init__(self, client: AsyncClient, task_token: str) -> None:
        self.client = client
        self.task_token = task_token

    async def complete(self, result: Any = None) -> None:
        payload = await self.client._converter.encode(to_json(result))
        _body(await self.client._call(_activity_request(self.task_token, "complete",
                                                        {"result": payload})))

    async def fail(self, error: BaseException) -> None:
        failure = await self.client._converter.encode_failure(failure_from_exception(error))
        _body(await self.client._call(_activity_request(self.task_token, "fail",
                                                        {"failure": failure})))

    async def heartbeat(self, details: Any = None) -> bool:
        payload = await self.client._converter.encode(to_json(details))
        return _cancel_requested(await self.client._call(
            _activity_request(self.task_token, "heartbeat", {"details": payload})))



class AsyncWorkflowHandle:
    """The asynchronous twin of ``WorkflowHandle``."""

    def __init__(self, client: AsyncClient, workflow_id: str, run_id: str | None = None, *,
                 result_type: Any = None, started: bool | None = None) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.result_type = result_type
        self.started = started  # as ``WorkflowHandle.started``

    def __repr__(self) -> str:
        return f"AsyncWorkflowHandle({self.workflow_id!r}, run_id={self.run_id!r})"

    async def result(self, timeout: float | None = None,  # noqa: ASYNC109 (= sync API)
                     *, result_type: Any = None) -> Any:
        """Wait for the run to close; its result (rebuilt as ``result_type`` or the handle's),
        or ``WorkflowFailureError``/``TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = _ResultPoll(self.workflow_id, self.run_id, deadline)
        while True:
            wait = poll.next_wait()
            req = _result_request(self.workflow_id, poll.run_id, wait, self.client.timeout)
            body = await _decoded_body(self.client._converter,
                                       _object(await self.client._call(req)))
            closed, result = poll.outcome(body)
            if closed:
                return from_json(result, result_type or self.result_type)
            if body.get("status") == "continued_as_new":
                poll.follow(await self._describe(None))

    async def signal(self, name: str, input: Any = None) -> None:
        payload = await self.client._converter.encode(to_json(input))
        _body(await self.client._call(_signal_request(self.workflow_id, name, payload)))

    async def query(self, name: str, *args: Any) -> Any:
        """``WorkflowHandle.query``, awaitable."""
        return _query_result(await self.client._call(
            _query_request(self.workflow_id, self.run_id, name, args)))

    async def execute_update(self, name: str, *args: Any, update_id: str | None = None,
                             result_type: Any = None) -> Any:
        """``WorkflowHandle.execute_update``, awaitable."""
        req = _update_request(self.workflow_id, self.run_id, name, args, update_id,
                              self.client.timeout)
        converter = self.client._converter
        try:
            body = _object(await self.client._call(req))
        except WorkflowUpdateFailedError as err:
            if err.failure is not None and converter.codec is not None:
                err.failure = await converter.decode_failure(err.failure)
            raise
        return from_json(await converter.decode(body.get("result")), result_type)

    async def cancel(self, reason: str | None = None) -> None:
        _body(await self.client._call(_Request("POST", _path(self.workflow_id, "/cancel"),
                                               json=_reason_body(reason))))

    async def terminate(self, reason: str | None = None) -> None:
        _body(await self.client._call(_Request("POST", _path(self.workflow_id, "/terminate"),
                                               json=_reason_body(reason))))

    async def describe(self) -> dict[str, Any]:
        return await self._describe(self.run_id)

    async def _describe(self, run_id: str | None) -> dict[str, Any]:
        return _object(await self.client._call(
            _Request("GET", _path(self.workflow_id), params=_run_params(run_id))
        ))

    async def history(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        after: int | None = None
        while True:
            params = _run_params(self.run_id)
            if after is not None:
                params["after"] = after
            body = _object(await self.client._call(
                _Request("GET", _path(self.workflow_id, "/history"), params=params)
            ))
            events.extend(body.get("events") or [])
            next_after = body.get("next_after")
            if next_after is None or next_after == after:
                return events
            after = int(next_after)
