"""The REST API: one view per use case, each with its nested input and output serializers.

Views only decode (validate the body or query), make one call into a service or selector,
and encode the answer. Errors raised anywhere end in ``workflows.api.errors``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from asgiref.sync import async_to_sync
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dispatch import lessees, queries, updates
from schedproject import config
from schedproject.tracing import current_traceparent
from sdk.protocol.limits import MAX_REQUEST_ID_LENGTH, MAX_UPDATE_ID_LENGTH
from workflows import selectors, services
from workflows.core import visibility
from workflows.core.state import Status
from workflows.errors import InvalidInput, SchedError
from workflows.models import Execution

from . import waiters
from .errors import error_body, validation_body
from .health import health_checks
from .parsers import LimitedJSONParser
from .serializers import (
    MAX_REASON_LENGTH,
    ErrorDetailSerializer,
    ErrorSerializer,
    InputSerializer,
    JSONValueField,
    QuerySerializer,
    RunIdField,
    StrictCharField,
    StrictNumberField,
    WaitField,
    check_json_value,
    name_field,
    workflow_id_field,
)

MAX_EXECUTION_TIMEOUT_SECONDS = 3653 * 24 * 3600  # ten years, leap days included
MAX_PAGE_SIZE = 1000
MAX_BATCH_STARTS = 1000  # starts in one POST /api/workflows:batch
MAX_HISTORY_LIMIT = 10_000
MAX_EVENT_ID = 2**31 - 1
STATUSES = [s.value for s in Status]


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    texts = {400: "Malformed JSON.", 401: "Missing, unknown or revoked token.",
             403: "The token's scope does not allow the API.", 404: "No such workflow or run.",
             409: "The run's state does not allow this (e.g. `run_closed`).",
             413: "The body is larger than the configured limit.",
             422: "Invalid input (`invalid_input`; `fields` names each bad field), or a "
                  "name that cannot name anything (`invalid_name`: a control character, "
                  "`.`/`..`, whitespace at either end; the message says which and where).",
             503: "Too many waiting requests (`too_many_waiters`) or the database is "
                  "unavailable (`database_unavailable`); retry after `Retry-After` seconds."}
    return {code: OpenApiResponse(ErrorSerializer, description=texts[code]) for code in codes}


def _validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def request_id_field() -> StrictCharField:
    return StrictCharField(
        required=False, default=None, allow_null=True, min_length=1,
        max_length=MAX_REQUEST_ID_LENGTH,
        help_text="Your id for this request (e.g. a UUID): a retry with the same id is "
                  "answered like the first request and writes nothing new.")


def _run_path(workflow_id: str) -> str:
    return f"/api/workflows/{quote(workflow_id, safe='')}"


WORKFLOW_ID = OpenApiParameter("workflow_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                               description="The workflow id (URL-encoded; may contain `/`).")


class ApiView(APIView):
    parser_classes = [LimitedJSONParser]


class PathSerializer(InputSerializer):
    workflow_id = workflow_id_field()


class RunApiView(ApiView):
    """A view of one workflow: its id (from the path) is checked like any input, once the
    caller is authenticated (an id that cannot exist, e.g. with NUL, is a 422, not a 500)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        _validated(PathSerializer, {"workflow_id": kwargs["workflow_id"]})


class RunRefSerializer(serializers.Serializer):  # type: ignore[type-arg]
    workflow_id = serializers.CharField()
    run_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=STATUSES)


# The bodies of the hottest answers, as their serializers (``RunRefSerializer``,
# ``WorkflowResultApi.ResultOutputSerializer``: the schema) render them, built directly: a
# serializer instance deep-copies its fields, a large part of a start's or a result's CPU.
_CLOSED_AT = serializers.DateTimeField(allow_null=True)


def run_ref(run: Execution) -> dict[str, Any]:
    return {"workflow_id": str(run.workflow_id), "run_id": str(run.run_id),
            "status": run.status}


def result_body(run: Execution) -> dict[str, Any]:
    return {**run_ref(run), "result": run.result, "failure": run.failure,
            "closed_at": (None if run.closed_at is None
                          else _CLOSED_AT.to_representation(run.closed_at))}


class RunQuerySerializer(QuerySerializer):
    run_id = RunIdField(required=False, help_text="A run of the workflow; default the latest.")


class WorkflowListItemSerializer(serializers.Serializer):  # type: ignore[type-arg]
    workflow_id = serializers.CharField()
    run_id = serializers.UUIDField()
    workflow_type = serializers.CharField()
    task_queue = serializers.CharField()
    status = serializers.ChoiceField(choices=STATUSES)
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)


class WorkflowListSerializer(serializers.Serializer):  # type: ignore[type-arg]
    items = WorkflowListItemSerializer(many=True)
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Pass as `cursor` for the next page; null on the last page.")


# ---- /api/workflows ------------------------------------------------------------------------


def start_workflow(data: dict[str, Any]) -> services.Outcome:
    """Start the run a validated start body asks for (``WorkflowsApi.StartInputSerializer``);
    shared by the view and the lean start path (``workflows.api.fast``). The outcome's
    ``started`` is False when the answer is a run that was already open (``use_existing``,
    or a signal-with-start that signalled it)."""
    data = dict(data)
    timeout = data.pop("execution_timeout")
    # A worker connected to this process may take the run's first task in the start's
    # own transaction; otherwise the dispatcher leases it.
    reservation = lessees.reserve(task_queue=data["task_queue"],
                                  workflow_type=data["workflow_type"])
    outcome = None
    try:
        outcome = services.workflow_start_handing_off(
            **data,
            execution_timeout_ms=None if timeout is None else max(1, round(timeout * 1000)),
            trace_context=current_traceparent(),
            lessee=None if reservation is None else reservation.lessee)
    finally:
        if reservation is not None:
            reservation.settle(outcome.deliveries if outcome is not None else [])
    return outcome


def run_location(run: Execution) -> str:
    return f"{_run_path(run.workflow_id)}?run_id={run.run_id}"


class StartOutputSerializer(RunRefSerializer):
    started = serializers.BooleanField(
        help_text="Whether this request started the run (201); false when the answer is a "
                  "run that was already open (200: `id_conflict_policy` `use_existing`, or "
                  "a signal-with-start that signalled it).")


def start_answer(outcome: services.Outcome) -> dict[str, Any]:
    """The body of a start's answer (``StartOutputSerializer``)."""
    return {**run_ref(outcome.execution), "started": outcome.started}


def start_status(outcome: services.Outcome) -> int:
    return status.HTTP_201_CREATED if outcome.started else status.HTTP_200_OK


ID_CONFLICT_POLICIES = list(services.ID_CONFLICT_POLICIES)


class WorkflowsApi(ApiView):
    """Start a workflow (POST) and list runs (GET)."""

    class StartInputSerializer(InputSerializer):
        workflow_type = name_field()
        input = JSONValueField(help_text="Any JSON value, handed to the workflow.")
        workflow_id = workflow_id_field(
            required=False, help_text="Your id for the workflow (an idempotency key); "
                                      "default a new UUID.")
        task_queue = name_field(required=False, default="default")
        execution_timeout = StrictNumberField(
            required=False, allow_null=True, default=None, min_value=0.001,
            max_value=MAX_EXECUTION_TIMEOUT_SECONDS,
            help_text="Seconds the whole run may take; it times out after that.")
        request_id = request_id_field()
        id_conflict_policy = serializers.ChoiceField(
            choices=ID_CONFLICT_POLICIES, required=False, allow_null=True, default=None,
            help_text="When `workflow_id` has an open run: `fail` (the default) refuses the "
                      "start (409 `workflow_already_started`); `use_existing` answers 200 "
                      "with that run (`started` false), or 409 `workflow_type_mismatch` / "
                      "`task_queue_mismatch` if it has another type or queue. A "
                      "signal-with-start is `use_existing` (`fail` is a 422).")
        start_signal = name_field(
            required=False, allow_null=True, default=None,
            help_text="Signal-with-start: the signal's name. An open run of `workflow_id` is "
                      "signalled (200, `started` false); otherwise the run is started (201) "
                      "with the signal recorded right after its start, so its first "
                      "workflow task sees it.")
        start_signal_input = JSONValueField(help_text="The signal's input (any JSON value).")

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            attrs = super().validate(attrs)
            given = self.initial_data if isinstance(self.initial_data, dict) else {}
            if attrs.get("start_signal") is None and "start_signal_input" in given:
                raise serializers.ValidationError(
                    {"start_signal_input": ["needs start_signal."]})
            if attrs.get("start_signal") is not None and attrs.get("id_conflict_policy") == (
                    services.FAIL):
                raise serializers.ValidationError({"id_conflict_policy": [
                    "a signal-with-start signals an open run: use_existing, not fail."]})
            return attrs

    class ListQuerySerializer(QuerySerializer):
        status = serializers.ChoiceField(choices=STATUSES, required=False)
        workflow_type = name_field(required=False)
        task_queue = name_field(required=False)
        workflow_id = workflow_id_field(required=False)
        query = StrictCharField(
            required=False, max_length=visibility.MAX_QUERY_CHARS,
            help_text="A list filter in Temporal's syntax, e.g. `WorkflowType = 'charge' AND "
                      "ExecutionStatus = 'Running'` (fields WorkflowId, WorkflowType, RunId, "
                      "TaskQueue, ExecutionStatus, StartTime, CloseTime; = != > >= < <=, IN, "
                      "NOT IN, BETWEEN, STARTS_WITH, IS [NOT] NULL, AND, OR, parentheses). "
                      "422 `invalid_query` says what is wrong and where.")
        cursor = StrictCharField(required=False, max_length=200,
                                 help_text="`next_cursor` of the previous page.")
        page_size = serializers.IntegerField(required=False, default=100, min_value=1,
                                             max_value=MAX_PAGE_SIZE)

    @extend_schema(operation_id="workflow_start", request=StartInputSerializer,
                   responses={201: StartOutputSerializer,
                              200: OpenApiResponse(StartOutputSerializer, description=(
                                  "The run that was already open (`started` false): "
                                  "`id_conflict_policy` `use_existing`, or a "
                                  "signal-with-start, which signalled it.")),
                              409: OpenApiResponse(ErrorSerializer, description=(
                                  "`workflow_already_started` (the `workflow_id` has an "
                                  "open run, named by `run_id`), `workflow_type_mismatch` "
                                  "or `task_queue_mismatch` (`use_existing`, and the open "
                                  "run has another type or queue: `run_id` and its "
                                  "`workflow_type` or `task_queue`), `request_id_reused`.")),
                              **_errors(400, 401, 403, 413, 422)},
                   description="Start a run (201, `started` true). A `workflow_id` with an "
                               "open run is refused (409 `workflow_already_started`, naming "
                               "its `run_id`), unless `id_conflict_policy` is `use_existing` "
                               "or the start is a signal-with-start (`start_signal`): the "
                               "answer is then that run (200, `started` false).")
    def post(self, request: Request) -> Response:
        outcome = start_workflow(_validated(self.StartInputSerializer, request.data))
        return Response(start_answer(outcome), status=start_status(outcome),
                        headers={"Location": run_location(outcome.execution)})

    @extend_schema(operation_id="workflow_list", parameters=[ListQuerySerializer],
                   responses={200: WorkflowListSerializer, **_errors(401, 403, 422)},
                   description="Runs, newest first. Pass `next_cursor` as `cursor` for the "
                               "next page; it is null on the last page.")
    def get(self, request: Request) -> Response:
        query = _validated(self.ListQuerySerializer, request.query_params)
        cursor = query.pop("cursor", None)
        page_size = query.pop("page_size")
        text = query.pop("query", None)
        try:
            expr = visibility.parse(text) if text else None
        except visibility.QueryError as exc:
            raise InvalidInput(str(exc), code="invalid_query") from None
        page, next_cursor = selectors.execution_list(filters=query, cursor=cursor,
                                                     page_size=page_size, query=expr)
        return Response(WorkflowListSerializer({"items": page, "next_cursor": next_cursor}).data)


# ---- /api/workflows:batch ------------------------------------------------------------------


class StartBatchInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The batch body (documentation only: each item is validated on its own, so that a bad
    item fails only itself)."""

    workflows = WorkflowsApi.StartInputSerializer(
        many=True,
        help_text=f"1 to {MAX_BATCH_STARTS} starts, each the body of `POST /api/workflows`.")


class StartBatchResultItemSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """One start's answer: the run it started, or its error (documentation only)."""

    workflow_id = serializers.CharField(required=False)
    run_id = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=STATUSES, required=False)
    started = serializers.BooleanField(required=False, help_text=(
        "Whether this item started the run; false when it is a run that was already open."))
    error = ErrorDetailSerializer(
        required=False, help_text="This start's error (`invalid_input`, "
                                  "`workflow_already_started`...); the others still start.")


class StartBatchResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = StartBatchResultItemSerializer(many=True, help_text="One per start, in order.")


class WorkflowsBatchApi(ApiView):
    """Start many workflows in one request and one transaction (POST)."""

    class BatchInputSerializer(InputSerializer):
        workflows = serializers.ListField(child=serializers.JSONField(), min_length=1,
                                          max_length=MAX_BATCH_STARTS)

    @extend_schema(operation_id="workflow_start_batch", request=StartBatchInputSerializer,
                   responses={200: StartBatchResultSerializer, **_errors(400, 401, 403, 413, 422)},
                   description=(
                       f"Start up to {MAX_BATCH_STARTS} runs in one transaction. Each item is "
                       "the body of `POST /api/workflows` and is answered in order, in "
                       "`results`: the run (`workflow_id`, `run_id`, `status`, `started`) "
                       "or an `error` (`invalid_input` with its `fields`, "
                       "`workflow_already_started` naming the open `run_id`, "
                       "`workflow_type_mismatch`...), which fails that item only. Items "
                       "take `id_conflict_policy` and signal-with-start as the single start "
                       "does. A body that is not such a list is a 422."))
    def post(self, request: Request) -> Response:
        items = _validated(self.BatchInputSerializer, request.data)["workflows"]
        trace_context = current_traceparent()
        results: list[dict[str, Any] | None] = []
        starts: list[services.StartRequest] = []
        for item in items:
            serializer = WorkflowsApi.StartInputSerializer(data=item)
            if not serializer.is_valid():
                results.append(validation_body(exceptions.ValidationError(serializer.errors)))
                continue
            data = dict(serializer.validated_data)
            timeout = data.pop("execution_timeout")
            starts.append(services.StartRequest(
                **data, trace_context=trace_context,
                execution_timeout_ms=None if timeout is None else max(1, round(timeout * 1000))))
            results.append(None)
        answers = iter(services.workflow_start_many(starts=starts) if starts else [])
        for i, result in enumerate(results):
            if result is None:
                answer = next(answers)
                results[i] = (error_body(answer.code, answer.message, **answer.extra)
                              if isinstance(answer, SchedError)
                              else start_answer(answer))
        return Response({"results": results})


# ---- /api/workflows/{workflow_id} ----------------------------------------------------------


class PendingActivitySerializer(serializers.Serializer):  # type: ignore[type-arg]
    seq = serializers.IntegerField()
    activity_type = serializers.CharField()
    scheduled_event_id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=["scheduled", "started", "backoff", "cancel_requested"])
    attempt = serializers.IntegerField()
    last_failure = serializers.JSONField(allow_null=True)
    heartbeat_details = serializers.JSONField(allow_null=True)
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)


class PendingTimerSerializer(serializers.Serializer):  # type: ignore[type-arg]
    seq = serializers.IntegerField()
    fire_at = serializers.CharField()


class RunParentSerializer(serializers.Serializer):  # type: ignore[type-arg]
    workflow_id = serializers.CharField()
    run_id = serializers.UUIDField()


class WorkflowDetailSerializer(serializers.Serializer):  # type: ignore[type-arg]
    workflow_id = serializers.CharField(source="execution.workflow_id")
    run_id = serializers.UUIDField(source="execution.run_id")
    workflow_type = serializers.CharField(source="execution.workflow_type")
    task_queue = serializers.CharField(source="execution.task_queue")
    status = serializers.ChoiceField(choices=STATUSES, source="execution.status")
    input = serializers.JSONField(source="execution.input")
    result = serializers.JSONField(source="execution.result")
    failure = serializers.JSONField(source="execution.failure")
    created_at = serializers.DateTimeField(source="execution.created_at")
    closed_at = serializers.DateTimeField(source="execution.closed_at", allow_null=True)
    history_length = serializers.IntegerField(source="execution.history_length")
    cancel_requested = serializers.BooleanField()
    pending_activities = PendingActivitySerializer(many=True)
    pending_timers = PendingTimerSerializer(many=True)
    last_task_failure = serializers.JSONField(
        source="execution.last_task_failure", allow_null=True,
        help_text="While the workflow task keeps failing (the run is stuck): the last failure, "
                  "with its `cause` and `attempt`.")
    parent = RunParentSerializer(source="execution.parent", allow_null=True)


class WorkflowDetailApi(RunApiView):
    @extend_schema(operation_id="workflow_describe", parameters=[WORKFLOW_ID, RunQuerySerializer],
                   responses={200: WorkflowDetailSerializer, **_errors(401, 403, 404, 422)})
    def get(self, request: Request, workflow_id: str) -> Response:
        query = _validated(RunQuerySerializer, request.query_params)
        described = selectors.execution_describe(workflow_id=workflow_id, **query)
        return Response(WorkflowDetailSerializer(described).data)


# ---- history and result --------------------------------------------------------------------


class HistoryEventSerializer(serializers.Serializer):  # type: ignore[type-arg]
    event_id = serializers.IntegerField()
    event_type = serializers.CharField()
    timestamp = serializers.DateTimeField()
    attributes = serializers.JSONField()


class HistoryPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    events = HistoryEventSerializer(many=True)
    next_after = serializers.IntegerField(
        allow_null=True, help_text="Pass as `after` for the next page; null when this page "
                                   "reaches the end of the history so far.")
    run_id = serializers.UUIDField(source="execution.run_id")
    status = serializers.ChoiceField(choices=STATUSES, source="execution.status")


class WorkflowHistoryApi(RunApiView):
    class HistoryQuerySerializer(RunQuerySerializer):
        after = serializers.IntegerField(required=False, default=0, min_value=0,
                                         max_value=MAX_EVENT_ID,
                                         help_text="Only events with a larger `event_id`.")
        limit = serializers.IntegerField(required=False, default=1000, min_value=1,
                                         max_value=MAX_HISTORY_LIMIT)
        wait = WaitField(help_text="Seconds (at most 60) to wait for events after `after` "
                                   "while the run is open.")

    @extend_schema(operation_id="workflow_history",
                   parameters=[WORKFLOW_ID, HistoryQuerySerializer],
                   responses={200: HistoryPageSerializer, **_errors(401, 403, 404, 422, 503)})
    def get(self, request: Request, workflow_id: str) -> Response:
        query = _validated(self.HistoryQuerySerializer, request.query_params)
        with waiters.slot(query["wait"]):
            page = selectors.history_page(workflow_id=workflow_id, **query)
        return Response(HistoryPageSerializer(page).data)


class WorkflowResultApi(RunApiView):
    class ResultQuerySerializer(RunQuerySerializer):
        wait = WaitField(help_text="Seconds (at most 60) to wait for the run to close.")

    class ResultOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        workflow_id = serializers.CharField()
        run_id = serializers.UUIDField()
        status = serializers.ChoiceField(choices=STATUSES)
        result = serializers.JSONField(allow_null=True, help_text="Once completed.")
        failure = serializers.JSONField(allow_null=True, help_text="Once failed, canceled, "
                                                                   "terminated or timed out.")
        closed_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(operation_id="workflow_result", parameters=[WORKFLOW_ID, ResultQuerySerializer],
                   responses={200: ResultOutputSerializer, **_errors(401, 403, 404, 422, 503)},
                   description="Answers when the run closes or `wait` ends; `status` says "
                               "which (`running` if the wait ended first).")
    def get(self, request: Request, workflow_id: str) -> Response:
        query = _validated(self.ResultQuerySerializer, request.query_params)
        with waiters.slot(query["wait"]):
            run = selectors.execution_result(workflow_id=workflow_id, **query)
        return Response(result_body(run))


# ---- signal, cancel, terminate -------------------------------------------------------------


class WorkflowSignalApi(RunApiView):
    class SignalInputSerializer(InputSerializer):
        name = name_field()
        input = JSONValueField()
        run_id = RunIdField(required=False)
        request_id = request_id_field()

    @extend_schema(operation_id="workflow_signal", parameters=[WORKFLOW_ID],
                   request=SignalInputSerializer,
                   responses={202: RunRefSerializer,
                              **_errors(400, 401, 403, 404, 409, 413, 422)})
    def post(self, request: Request, workflow_id: str) -> Response:
        data = _validated(self.SignalInputSerializer, request.data)
        run = services.workflow_signal(workflow_id=workflow_id, **data)
        return Response(run_ref(run), status=status.HTTP_202_ACCEPTED)


class ReasonInputSerializer(InputSerializer):
    reason = StrictCharField(required=False, allow_null=True, allow_blank=True,
                             max_length=MAX_REASON_LENGTH)
    run_id = RunIdField(required=False)


class WorkflowCancelApi(RunApiView):
    @extend_schema(operation_id="workflow_cancel", parameters=[WORKFLOW_ID],
                   request=ReasonInputSerializer,
                   responses={202: RunRefSerializer,
                              **_errors(400, 401, 403, 404, 409, 413, 422)},
                   description="Ask the run to cancel; the workflow sees it and decides.")
    def post(self, request: Request, workflow_id: str) -> Response:
        data = _validated(ReasonInputSerializer, request.data)
        run = services.workflow_request_cancel(workflow_id=workflow_id, **data)
        return Response(run_ref(run), status=status.HTTP_202_ACCEPTED)


class WorkflowTerminateApi(RunApiView):
    @extend_schema(operation_id="workflow_terminate", parameters=[WORKFLOW_ID],
                   request=ReasonInputSerializer,
                   responses={202: RunRefSerializer,
                              **_errors(400, 401, 403, 404, 409, 413, 422)},
                   description="Close the run now, without running workflow code.")
    def post(self, request: Request, workflow_id: str) -> Response:
        data = _validated(ReasonInputSerializer, request.data)
        run = services.workflow_terminate(workflow_id=workflow_id, **data)
        return Response(run_ref(run), status=status.HTTP_202_ACCEPTED)


# ---- async activity completion --------------------------------------------------------------

TASK_TOKEN = OpenApiParameter(
    "task_token", OpenApiTypes.STR, OpenApiParameter.PATH,
    description="The activity attempt's task token (`sdk.ActivityInfo.task_token`).")
_ACTIVITY_ERRORS = {
    404: OpenApiResponse(ErrorSerializer, description="No activity has that task token "
                         "(`activity_not_found`)."),
    409: OpenApiResponse(ErrorSerializer, description="The token is no longer the activity's "
                         "live attempt: it completed, failed, timed out or was retried "
                         "(`stale_task`)."),
}


class FailureField(serializers.JSONField):
    """A failure object (``sdk.protocol.Failure``; the engine normalizes it)."""

    def to_internal_value(self, data: Any) -> Any:
        check_json_value(data)
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be a failure object")
        return data


class ActivityCompleteApi(ApiView):
    class CompleteInputSerializer(InputSerializer):
        result = JSONValueField()

    @extend_schema(operation_id="activity_complete", parameters=[TASK_TOKEN],
                   request=CompleteInputSerializer,
                   responses={204: None, **_errors(400, 401, 403, 413, 422), **_ACTIVITY_ERRORS},
                   description="Complete an activity that raised `CompleteAsync`.")
    def post(self, request: Request, task_token: str) -> Response:
        data = _validated(self.CompleteInputSerializer, request.data)
        services.activity_complete_by_token(token=task_token, result=data["result"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class ActivityFailApi(ApiView):
    class FailInputSerializer(InputSerializer):
        failure = FailureField()

    @extend_schema(operation_id="activity_fail", parameters=[TASK_TOKEN],
                   request=FailInputSerializer,
                   responses={204: None, **_errors(400, 401, 403, 413, 422), **_ACTIVITY_ERRORS},
                   description="Fail the attempt of an activity that raised `CompleteAsync`; "
                               "it is retried per its retry policy.")
    def post(self, request: Request, task_token: str) -> Response:
        data = _validated(self.FailInputSerializer, request.data)
        services.activity_fail_by_token(token=task_token, failure=data["failure"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class ActivityHeartbeatApi(ApiView):
    class HeartbeatInputSerializer(InputSerializer):
        details = JSONValueField()

    class HeartbeatOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        cancel_requested = serializers.BooleanField()

    @extend_schema(operation_id="activity_heartbeat", parameters=[TASK_TOKEN],
                   request=HeartbeatInputSerializer,
                   responses={200: HeartbeatOutputSerializer,
                              **_errors(400, 401, 403, 413, 422), **_ACTIVITY_ERRORS},
                   description="Record a heartbeat of an activity that raised `CompleteAsync`; "
                               "the answer says whether the workflow asked it to cancel.")
    def post(self, request: Request, task_token: str) -> Response:
        data = _validated(self.HeartbeatInputSerializer, request.data)
        cancel = services.activity_heartbeat_by_token(token=task_token, details=data["details"])
        return Response({"cancel_requested": cancel})
# ---- queries (dispatch.queries) --------------------------------------------------------------

QUERY_NAME = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH,
                              description="The query's name (URL-encoded).")
MAX_QUERY_ARGS = 100


def query_wait_seconds() -> float:
    """The longest a query may wait: for a worker, then for its answer."""
    cfg = config.get()
    return cfg.query_worker_wait_seconds + cfg.query_timeout_seconds


class QueryOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    result = serializers.JSONField(allow_null=True, help_text="What the query handler returned.")


class WorkflowQueryApi(RunApiView):
    class QueryInputSerializer(InputSerializer):
        args = serializers.ListField(
            child=JSONValueField(), required=False, default=list, max_length=MAX_QUERY_ARGS,
            help_text="The handler's arguments, in order.")
        run_id = RunIdField(required=False)

    class QueryNameSerializer(InputSerializer):
        name = name_field()

    @extend_schema(
        operation_id="workflow_query", parameters=[WORKFLOW_ID, QUERY_NAME],
        request=QueryInputSerializer,
        responses={200: QueryOutputSerializer,
                   404: OpenApiResponse(ErrorSerializer, description=(
                       "No such workflow or run (`not_found`), or the workflow has no handler "
                       "of that name (`query_not_found`, answered by the worker).")),
                   422: OpenApiResponse(ErrorSerializer, description=(
                       "Invalid input (`invalid_input`, `invalid_name`), or the query failed "
                       "(`query_failed`: its handler raised or tried to change the run, or "
                       "the run could not be replayed; the message says which).")),
                   504: OpenApiResponse(ErrorSerializer, description=(
                       "No connected worker serves the run's type and queue "
                       "(`no_worker`, after `SCHED_QUERY_WORKER_WAIT_SECONDS`), or none "
                       "answered in time (`query_timeout`).")),
                   **_errors(400, 401, 403, 413)},
        description="Ask the run's query handler `name` for a value: a worker serving the "
                    "run's type answers from the run's state (an open run's, or a closed "
                    "run's, replayed from its history). A query writes nothing.")
    def post(self, request: Request, workflow_id: str, name: str) -> Response:
        _validated(self.QueryNameSerializer, {"name": name})
        data = _validated(self.QueryInputSerializer, request.data)
        target = queries.query_target(workflow_id=workflow_id, run_id=data.get("run_id"))
        with waiters.slot(query_wait_seconds()):  # this request's thread waits
            result = async_to_sync(queries.ask)(target, name=name, args=list(data["args"]))
        return Response(QueryOutputSerializer({"result": result}).data)


# ---- updates (dispatch.updates) --------------------------------------------------------------

UPDATE_NAME = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH,
                               description="The update's name (URL-encoded).")


class UpdateOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    result = serializers.JSONField(allow_null=True,
                                   help_text="What the update handler returned.")


class WorkflowUpdateApi(RunApiView):
    class UpdateInputSerializer(InputSerializer):
        args = serializers.ListField(
            child=JSONValueField(), required=False, default=list, max_length=MAX_QUERY_ARGS,
            help_text="The handler's (and its validator's) arguments, in order.")
        update_id = StrictCharField(
            required=False, default=None, allow_null=True, min_length=1,
            max_length=MAX_UPDATE_ID_LENGTH,
            help_text="Your id for this update (default: a new one): asked again, an update "
                      "id already accepted is not accepted twice and answers its first "
                      "outcome.")
        run_id = RunIdField(required=False)

    @extend_schema(
        operation_id="workflow_update", parameters=[WORKFLOW_ID, UPDATE_NAME],
        request=UpdateInputSerializer,
        responses={200: UpdateOutputSerializer,
                   404: OpenApiResponse(ErrorSerializer, description=(
                       "No such workflow or run (`not_found`), or the workflow has no update "
                       "handler of that name (`update_not_found`, answered by the worker).")),
                   409: OpenApiResponse(ErrorSerializer, description=(
                       "The run is closed, or closed before the update completed "
                       "(`run_closed`).")),
                   422: OpenApiResponse(ErrorSerializer, description=(
                       "Invalid input (`invalid_input`, `invalid_name`); the validator "
                       "rejected the update (`update_rejected`, nothing written); or the "
                       "handler failed the update (`update_failed`, with its `failure`; the "
                       "run goes on).")),
                   504: OpenApiResponse(ErrorSerializer, description=(
                       "No connected worker serves the run's type and queue (`no_worker`), "
                       "or the update was not validated or completed in time "
                       "(`update_timeout`, after `SCHED_UPDATE_TIMEOUT_SECONDS`; asking "
                       "again with the same `update_id` waits on).")),
                   **_errors(400, 401, 403, 413, 503)},
        description="Run the workflow's update handler `name` with `args` and answer its "
                    "result: a worker runs the handler's validator first (a rejection "
                    "writes nothing), then the update is recorded as accepted, the workflow "
                    "runs the handler, and its completion is recorded and answered.")
    def post(self, request: Request, workflow_id: str, name: str) -> Response:
        _validated(WorkflowQueryApi.QueryNameSerializer, {"name": name})
        data = _validated(self.UpdateInputSerializer, request.data)
        update = updates.Update(workflow_id=workflow_id, run_id=data.get("run_id"), name=name,
                                args=list(data["args"]),
                                update_id=data["update_id"] or updates.new_update_id())
        with waiters.slot(updates.update_wait_seconds()):  # this request's thread waits
            result = updates.execute_update(update)
        return Response(UpdateOutputSerializer({"result": result}).data)


# ---- health --------------------------------------------------------------------------------


class HealthApi(ApiView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class HealthOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        status = serializers.CharField(help_text="`ok` or `failing`.")
        checks = serializers.DictField(child=serializers.CharField())

    @extend_schema(operation_id="healthz", auth=[],
                   responses={200: HealthOutputSerializer, 503: HealthOutputSerializer})
    def get(self, request: Request) -> Response:
        healthy, checks = health_checks()
        return Response({"status": "ok" if healthy else "failing", "checks": checks},
                        status=status.HTTP_200_OK if healthy else
                        status.HTTP_503_SERVICE_UNAVAILABLE)
