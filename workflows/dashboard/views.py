"""Dashboard pages. Each view decodes its form, makes one call into a selector or a service,
and renders; domain errors (``SchedError``) become a message on the page, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.contrib.staticfiles.views import serve
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.fields import DateTimeField

from dispatch import queries
from schedproject import config
from sdk.protocol.payloads import CODEC_KEY, is_encoded_payload
from workflows import selectors, services
from workflows.api import waiters
from workflows.api.views import query_wait_seconds
from workflows.core.events import EventType
from workflows.core.state import Status
from workflows.errors import NotFound, SchedError
from workflows.models import Execution

from . import access, forms, timeline

PAGE_SIZE = 50
MAX_EVENTS = 2000
STATUSES = [s.value for s in Status]


def pretty(value: Any) -> str:
    return json.dumps(shown(value), indent=2, ensure_ascii=False, sort_keys=False, default=str)


def shown(value: Any) -> Any:
    """``value`` with each payload a codec encoded (``{"__sched_codec__": ...}``) shown as
    what it is: the engine cannot read it, so the page says so instead of printing base64."""
    if is_encoded_payload(value):
        size = len(value[CODEC_KEY]) * 3 // 4
        return f"<encoded payload, about {size} bytes (PayloadCodec)>"
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


def run_url(run: Execution | None = None, *, workflow_id: str = "",
            run_id: str | None = None) -> str:
    if run is not None:
        workflow_id, run_id = run.workflow_id, str(run.run_id)
    url = _with_id("dashboard:workflow", workflow_id)
    return f"{url}?{urlencode({'run_id': run_id})}" if run_id else url


def _with_id(view: str, workflow_id: str) -> str:
    """The URL of ``view`` for ``workflow_id``, the id quoted whole: ``reverse`` leaves ``/``
    as it is and refuses ids its pattern does not match (a line feed), where ``%2F`` and
    ``%0A`` arrive decoded as the same id."""
    prefix = reverse(view, kwargs={"workflow_id": "_"}).removesuffix("_")
    return prefix + quote(workflow_id, safe="")


def _error_page(request: HttpRequest, message: str, *, status: int,
                errors: Any = None) -> HttpResponse:
    return render(request, "dashboard/error.html",
                  {"message": message, "errors": errors}, status=status)


def _valid_workflow_id(workflow_id: str) -> bool:
    """Whether ``workflow_id`` can be looked up: a run's page and its actions take any id the
    database can hold, so a run started before names were checked stays reachable."""
    return forms.storable_id_problem(workflow_id) is None


def static(request: HttpRequest, path: str) -> HttpResponseBase:
    """The dashboard's and the admin's static files, served by the engine itself (no build
    step, no separate web server for a local run)."""
    response = serve(request, path, insecure=True)
    response["Cache-Control"] = "public, max-age=300"
    return response


# ---- list ----------------------------------------------------------------------------------


@access.require("view")
@require_GET
def workflow_list(request: HttpRequest) -> HttpResponse:
    form = forms.ListFilterForm(request.GET)
    runs: list[Execution] = []
    counts: dict[str, int] = {}
    next_cursor = None
    error = ""
    filters: dict[str, Any] = {}
    if form.is_valid():
        data = form.cleaned_data
        since = (timezone.now() - timedelta(seconds=forms.TIME_RANGES[data["range"]])
                 if data["range"] else None)
        filters = {k: data[k] for k in ("workflow_type", "task_queue", "workflow_id")}
        try:
            runs, next_cursor = selectors.execution_page(
                status=data["status"], since=since, cursor=data["cursor"] or None,
                page_size=PAGE_SIZE, **filters)
            counts = selectors.execution_status_counts(since=since, **filters)
        except SchedError as exc:
            error = exc.message
    else:
        error = "Invalid filter: " + "; ".join(
            f"{name}: {' '.join(str(e) for e in errs)}" for name, errs in form.errors.items())
    query = {k: v for k, v in request.GET.items() if k != "cursor" and v}
    chips = [{"status": s, "count": counts.get(s, 0),
              "url": "?" + urlencode({**{k: v for k, v in query.items() if k != "status"},
                                      **({"status": s} if s != query.get("status") else {})}),
              "active": query.get("status") == s}
             for s in STATUSES]
    context = {
        "form": form, "runs": runs, "chips": chips, "total": sum(counts.values()),
        "error": error, "filtered": bool(query), "nav": "workflows",
        "next_url": "?" + urlencode({**query, "cursor": next_cursor}) if next_cursor else "",
        "first_url": "?" + urlencode(query) if request.GET.get("cursor") else "",
    }
    return render(request, "dashboard/workflow_list.html", context,
                  status=200 if not error else 400)


# ---- one run -------------------------------------------------------------------------------


def _run_context(run: Execution) -> dict[str, Any]:
    description = selectors.execution_describe(workflow_id=run.workflow_id,
                                               run_id=str(run.run_id))
    run = description.execution
    events, truncated = selectors.history_events(run, limit=MAX_EVENTS)
    now = timezone.now()
    tl = timeline.build(events, pending_activities=description.pending_activities, now=now,
                        closed_at=run.closed_at)
    signals = [{"event_id": e.event_id, "timestamp": e.timestamp,
                "name": e.attributes.get("signal_name"), "input": pretty(e.attributes.get("input"))}
               for e in events if e.event_type == EventType.WORKFLOW_EXECUTION_SIGNALED]
    activities = [{**a, "last_failure_json": pretty(a["last_failure"]) if a["last_failure"]
                   else "", "heartbeat_json": pretty(a["heartbeat_details"])
                   if a["heartbeat_details"] is not None else ""}
                  for a in description.pending_activities]
    return {
        "run": run, "is_open": run.status == Status.RUNNING.value,
        "cancel_requested": description.cancel_requested,
        "input_json": pretty(run.input), "result_json": pretty(run.result),
        "failure_json": pretty(run.failure) if run.failure is not None else "",
        "task_failure_json": pretty(run.last_task_failure) if run.last_task_failure else "",
        "events": [{"event_id": e.event_id, "event_type": e.event_type,
                    "timestamp": e.timestamp, "attributes": pretty(e.attributes)}
                   for e in events],
        "events_truncated": truncated, "max_events": MAX_EVENTS,
        "timeline": tl, "duration": timeline.describe_seconds(tl.duration.total_seconds()),
        "pending_activities": activities,
        "pending_timers": [{**t, "fire_at": _as_datetime(t["fire_at"])}
                           for t in description.pending_timers],
        "signals": signals, "fingerprint": selectors.execution_fingerprint(run),
        "family": selectors.execution_family(run),
        "live_url": _with_id("dashboard:workflow-live", run.workflow_id)
        + "?" + urlencode({"run_id": str(run.run_id)}),
        "api_history_url": f"/api/workflows/{quote(run.workflow_id, safe='')}/history?"
                           + urlencode({"run_id": str(run.run_id)}),
        "download_history_url": _with_id("dashboard:workflow-history", run.workflow_id)
        + "?" + urlencode({"run_id": str(run.run_id)}),
    }


def _as_datetime(value: Any) -> Any:
    """A timer's ``fire_at`` (kept as ISO text in the run's state) as a datetime."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _render_run(request: HttpRequest, run: Execution, *, status: int = 200,
                **forms_and_errors: Any) -> HttpResponse:
    ident = {"workflow_id": run.workflow_id, "run_id": str(run.run_id)}
    context = {
        "signal_form": forms.SignalForm(initial=ident),
        "cancel_form": forms.ReasonForm(initial=ident, auto_id="cancel_%s"),
        "terminate_form": forms.ReasonForm(initial=ident, auto_id="terminate_%s"),
        "query_form": forms.QueryForm(initial=ident, auto_id="query_%s"),
        **_run_context(run), **forms_and_errors,
    }
    return render(request, "dashboard/workflow_detail.html", context, status=status)


def _find_run(workflow_id: str, run_id: str | None) -> Execution:
    if not _valid_workflow_id(workflow_id):
        raise NotFound("no such workflow (the id is not a valid workflow id)")
    return selectors.execution_get(workflow_id=workflow_id, run_id=run_id)


@access.require("view")
@require_GET
def workflow_detail(request: HttpRequest, workflow_id: str) -> HttpResponse:
    try:
        run = _find_run(workflow_id, request.GET.get("run_id") or None)
    except SchedError as exc:
        return _error_page(request, exc.message, status=exc.http_status)
    return _render_run(request, run)


@access.require("view")
@require_GET
def workflow_live(request: HttpRequest, workflow_id: str) -> HttpResponse:
    """The live part of a run's page, polled by htmx every second while the run is open.
    Answers 204 (htmx keeps what it shows) while nothing changed since ``v``."""
    try:
        run = _find_run(workflow_id, request.GET.get("run_id") or None)
    except SchedError as exc:
        return _error_page(request, exc.message, status=exc.http_status)
    if request.GET.get("v") and request.GET["v"] == selectors.execution_fingerprint(run):
        return HttpResponse(status=204)
    return render(request, "dashboard/_run_live.html", {**_run_context(run), "live": True})


@access.require("view")
@require_GET
def workflow_history_download(request: HttpRequest, workflow_id: str) -> HttpResponse:
    """The run's whole history as a JSON file to download: ``workflow_id``, ``run_id``,
    ``workflow_type``, ``status`` and ``events``, each event as ``GET
    /api/workflows/{id}/history`` shows it. ``sdk.testing.Replayer`` replays the file."""
    try:
        run = _find_run(workflow_id, request.GET.get("run_id") or None)
    except SchedError as exc:
        return _error_page(request, exc.message, status=exc.http_status)
    stamp = DateTimeField().to_representation
    doc = {
        "workflow_id": run.workflow_id, "run_id": str(run.run_id),
        "workflow_type": run.workflow_type, "status": run.status,
        "events": [{"event_id": e.event_id, "event_type": e.event_type,
                    "timestamp": stamp(e.timestamp), "attributes": e.attributes}
                   for e in selectors.history_all(run)],
    }
    response = HttpResponse(json.dumps(doc, ensure_ascii=False), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{history_filename(run)}"'
    return response


def history_filename(run: Execution) -> str:
    """``<workflow id>.<run id>.history.json``, the id kept to safe characters."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_"
                   for c in run.workflow_id)[:100]
    return f"{safe}.{run.run_id}.history.json"


# ---- actions -------------------------------------------------------------------------------


def _valid_form_run(request: HttpRequest, form: forms.RunForm,
                    form_key: str) -> Execution | HttpResponse:
    """The run a posted ``form`` names, once the form is valid; else the page to answer
    with: an error page if the run cannot be found (or is not named validly), the run's page
    with the form's errors if the rest of the form is not valid."""
    if not form.is_valid() and ("workflow_id" in form.errors or "run_id" in form.errors):
        return _error_page(request, "The request does not name a valid run.",
                           status=422, errors=form.errors)
    try:
        run = _find_run(form.cleaned_data["workflow_id"], form.cleaned_data.get("run_id"))
    except SchedError as exc:
        return _error_page(request, exc.message, status=exc.http_status)
    if not form.is_valid():
        return _render_run(request, run, status=422, **{form_key: form})
    return run


def _action(request: HttpRequest, form: forms.RunForm, form_key: str,
            call: Callable[[dict[str, Any]], Execution], done: str) -> HttpResponse:
    """Validate ``form``, apply ``call`` to the run it names, and go back to the run's page
    (Post/Redirect/Get); on bad input or a refused transition, the run's page with the form's
    errors, or an error page if the run itself cannot be found."""
    run = _valid_form_run(request, form, form_key)
    if isinstance(run, HttpResponse):
        return run
    try:
        run = call(form.cleaned_data)
    except SchedError as exc:
        form.add_error(None, f"{exc.message} ({exc.code})")
        return _render_run(request, run, status=exc.http_status, **{form_key: form})
    messages.success(request, done)
    return HttpResponseRedirect(run_url(run))


@access.require("signal")
@require_POST
def workflow_signal(request: HttpRequest) -> HttpResponse:
    form = forms.SignalForm(request.POST)
    return _action(request, form, "signal_form", lambda d: services.workflow_signal(
        workflow_id=d["workflow_id"], run_id=d["run_id"], name=d["name"], input=d["input"]),
        f"Signal {form.data.get('name', '')!r} sent.")


QUERY_ANSWER_SHOWN_CHARS = 20_000


@access.require("view")
@require_POST
def workflow_query(request: HttpRequest) -> HttpResponse:
    """Ask the run's query handler, and show the answer on the run's page (a query writes
    nothing, so there is nothing to redirect away from)."""
    form = forms.QueryForm(request.POST)
    run = _valid_form_run(request, form, "query_form")
    if isinstance(run, HttpResponse):
        return run
    d = form.cleaned_data
    try:
        target = queries.query_target(workflow_id=run.workflow_id, run_id=str(run.run_id))
        with waiters.slot(query_wait_seconds()):
            result = async_to_sync(queries.ask)(target, name=d["name"], args=d["args"])
    except SchedError as exc:  # no worker, no such query, its handler failed, too many waiting
        form.add_error(None, f"{exc.message} ({exc.code})")
        return _render_run(request, run, status=exc.http_status, query_form=form)
    answer = json.dumps(result, indent=2, ensure_ascii=False)
    if len(answer) > QUERY_ANSWER_SHOWN_CHARS:
        answer = answer[:QUERY_ANSWER_SHOWN_CHARS] + "\n… (cut: the API gives it whole)"
    return _render_run(request, run, query_form=form,
                       query_answer={"name": d["name"], "text": answer})


@access.require("cancel")
@require_POST
def workflow_cancel(request: HttpRequest) -> HttpResponse:
    form = forms.ReasonForm(request.POST, auto_id="cancel_%s")
    return _action(request, form, "cancel_form", lambda d: services.workflow_request_cancel(
        workflow_id=d["workflow_id"], run_id=d["run_id"], reason=d["reason"] or None),
        "Cancellation requested: the workflow gets to clean up and close as canceled.")


@access.require("terminate")
@require_POST
def workflow_terminate(request: HttpRequest) -> HttpResponse:
    form = forms.ReasonForm(request.POST, auto_id="terminate_%s")
    return _action(request, form, "terminate_form", lambda d: services.workflow_terminate(
        workflow_id=d["workflow_id"], run_id=d["run_id"], reason=d["reason"] or None),
        "Workflow terminated.")


@access.require("start")
@require_http_methods(["GET", "POST"])
def workflow_start(request: HttpRequest) -> HttpResponse:
    status = 200
    if request.method == "POST":
        form = forms.StartForm(request.POST)
        if form.is_valid():
            d = form.cleaned_data
            timeout = d["execution_timeout"]
            try:
                run = services.workflow_start(
                    workflow_type=d["workflow_type"], workflow_id=d["workflow_id"] or None,
                    task_queue=d["task_queue"], input=d["input"],
                    execution_timeout_ms=None if timeout is None else max(1, round(timeout * 1000)))
            except SchedError as exc:
                form.add_error(None, f"{exc.message} ({exc.code})")
                status = exc.http_status
            else:
                messages.success(request, f"Started {run.workflow_type} {run.workflow_id!r}.")
                return HttpResponseRedirect(run_url(run))
        else:
            status = 422
    else:
        initial = {k: v for k, v in request.GET.items()
                   if k in ("workflow_type", "task_queue", "workflow_id")}
        form = forms.StartForm(initial={"task_queue": "default", **initial})
    types = sorted({t for row in selectors.worker_list() for t in row.session.workflow_types})
    return render(request, "dashboard/workflow_start.html",
                  {"form": form, "workflow_types": types, "nav": "start"},
                  status=status)


# ---- workers -------------------------------------------------------------------------------


@access.require("workers")
@require_GET
def worker_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    stale_after = config.get().lease_timeout_seconds
    rows = [{"row": row, "seen_ago": (now - row.session.last_seen_at).total_seconds(),
             "stale": (now - row.session.last_seen_at).total_seconds() > stale_after}
            for row in selectors.worker_list()]
    return render(request, "dashboard/worker_list.html", {"workers": rows, "nav": "workers"})
