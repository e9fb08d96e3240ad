"""The dashboard's pages and actions through Django's test client, on a real database: what an
operator sees, and that bad input ends in a message on the page, never a 500."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dispatch.models import Task, TaskKind, TaskState, WorkerSession
from tests.api.conftest import Engine
from workflows import selectors, services
from workflows.models import Execution

pytestmark = pytest.mark.django_db


def post(client: Client, url: str, data: dict[str, Any]) -> Any:
    """POST as the page's form would: with the CSRF token the page set."""
    if "csrftoken" not in client.cookies:
        client.get("/")
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def text(response: Any) -> str:
    """The page's visible text, roughly: tags dropped, whitespace squeezed."""
    body = response.content.decode()
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).replace("&#x27;", "'") \
        .replace("&quot;", '"').replace("&amp;", "&")


def start(workflow_id: str, workflow_type: str = "approval", task_queue: str = "default",
          input: Any = None) -> Execution:
    return services.workflow_start(workflow_type=workflow_type, workflow_id=workflow_id,
                                   task_queue=task_queue, input=input)


# ---- login ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/workers/", "/start/", "/workflows/x", "/live/x"])
def test_pages_need_a_login(client: Client, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 302 and r["Location"].startswith("/login/?next=")


def test_actions_need_a_login(client: Client) -> None:
    start("w")
    for url in ("/signal/", "/cancel/", "/terminate/"):
        r = client.post(url, {"workflow_id": "w", "name": "s"})
        assert r.status_code == 302 and r["Location"].startswith("/login/")
    assert Execution.objects.get(workflow_id="w").history_length == 2  # nothing happened


def test_login_and_logout(client: Client, user: User) -> None:
    page = client.get("/login/")
    assert page.status_code == 200 and "Log in to sched" in text(page)
    bad = client.post("/login/", {"username": "operator", "password": "wrong"})
    assert bad.status_code == 200 and "didn't match" in text(bad)
    r = client.post("/login/", {"username": "operator", "password": "pw-operator-123",
                                "next": "/workers/"})
    assert r.status_code == 302 and r["Location"] == "/workers/"
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_csrf_is_enforced(operator: Client) -> None:
    start("w")
    r = operator.post("/cancel/", {"workflow_id": "w"})  # no token
    assert r.status_code == 403
    assert Execution.objects.get(workflow_id="w").history_length == 2


def test_api_and_health_routes_still_answer(operator: Client) -> None:
    assert operator.get("/healthz").status_code == 200
    assert operator.get("/api/workflows").status_code == 401  # the API wants a token
    assert operator.get("/admin/").status_code in (200, 302)


def test_static_files_are_served(client: Client) -> None:
    r = client.get("/static/vendor/htmx.min.js")
    assert r.status_code == 200
    assert b"htmx" in b"".join(r.streaming_content)  # type: ignore[attr-defined]
    assert client.get("/static/dashboard/dashboard.css").status_code == 200
    assert client.get("/static/../settings.py").status_code in (400, 404)  # never the file


# ---- list ----------------------------------------------------------------------------------


def test_list_shows_runs_with_status_chips(operator: Client, engine: Engine) -> None:
    start("a-1", "approval")
    start("h-1", "hello", task_queue="other")
    engine.complete_workflow("h-1", "hi")
    r = operator.get("/")
    assert r.status_code == 200
    page = text(r)
    assert "a-1" in page and "h-1" in page
    assert "running 1" in page and "completed 1" in page and "failed 0" in page


def test_list_filters(operator: Client, engine: Engine) -> None:
    start("a-1", "approval")
    start("h-1", "hello", task_queue="other")
    engine.complete_workflow("h-1", "hi")

    def ids(query: str) -> list[str]:
        r = operator.get("/" + query)
        assert r.status_code == 200
        return re.findall(r'data-workflow-id="([^"]+)"', r.content.decode())

    assert ids("?status=running") == ["a-1"]
    assert ids("?status=completed") == ["h-1"]
    assert ids("?workflow_type=hello") == ["h-1"]
    assert ids("?task_queue=other") == ["h-1"]
    assert ids("?workflow_id=a-1") == ["a-1"]
    assert ids("?workflow_id=a-") == []
    assert ids("?range=15m") == ["h-1", "a-1"]
    Execution.objects.filter(workflow_id="a-1").update(
        created_at=timezone.now() - timedelta(hours=2))
    assert ids("?range=1h") == ["h-1"]
    assert ids("?range=24h&status=running") == ["a-1"]


def test_list_keyset_pagination(operator: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(55):
        start(f"w-{i:02d}")
    first = operator.get("/")
    body = first.content.decode()
    seen = re.findall(r'data-workflow-id="([^"]+)"', body)
    assert len(seen) == 50 and seen[0] == "w-54"
    next_url = re.search(r'href="(\?[^"]*cursor=[^"]+)" rel="next"', body)
    assert next_url is not None
    selectors._status_counts_cache.clear()
    with CaptureQueriesContext(connection) as queries:
        second = operator.get("/" + next_url.group(1).replace("&amp;", "&"))
    rest = re.findall(r'data-workflow-id="([^"]+)"', second.content.decode())
    assert rest == [f"w-{i:02d}" for i in range(4, -1, -1)]
    assert 'rel="next"' not in second.content.decode()
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    assert "OFFSET" not in sql
    # The only count is the chips' one GROUP BY status.
    counts = [q["sql"].upper() for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1 and "GROUP BY" in counts[0]
    # ... and when it is slow, it is not repeated for a few seconds.
    monkeypatch.setattr(selectors, "STATUS_COUNTS_SLOW_SECONDS", 0.0)
    operator.get("/")
    with CaptureQueriesContext(connection) as queries:
        operator.get("/")
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


@pytest.mark.parametrize("query", ["?status=nope", "?cursor=garbage", "?range=3y",
                                   "?workflow_id=" + "x" * 10_000, "?cursor=" + "a" * 300])
def test_list_bad_filters_give_a_message(operator: Client, query: str) -> None:
    r = operator.get("/" + query)
    assert r.status_code == 400
    assert 'role="alert"' in r.content.decode()


# ---- one run -------------------------------------------------------------------------------


def test_run_page_shows_status_input_timeline_and_pending_work(operator: Client,
                                                               engine: Engine) -> None:
    start("w", "order", input={"order_id": 7})
    engine.complete_task("w", [
        {"kind": "schedule_activity", "seq": 1, "activity_type": "charge", "input": 10},
        {"kind": "start_timer", "seq": 2, "duration_ms": 3_600_000},
    ])
    task = engine.lease_activity("w", 1)
    services.activity_task_heartbeat(token=task.token, details={"progress": 0.5})
    services.activity_task_fail(token=task.token,
                                failure={"type": "CardDeclined", "message": "declined"})
    services.workflow_signal(workflow_id="w", name="approve", input={"by": "ada"})
    r = operator.get("/workflows/w")
    assert r.status_code == 200
    body, page = r.content.decode(), text(r)
    assert "running" in page and '"order_id": 7' in page
    # pending activity with attempt and last failure, pending timer, signal
    assert re.search(r"charge backoff 2", page)
    assert "CardDeclined" in page and "declined" in page
    assert re.search(r"timer #2 fires at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in 59", page)
    assert "approve" in page and '"by": "ada"' in page
    # the timeline has a bar per activity and timer, the activity marked as failed once
    assert 'data-kind="activity" data-outcome="backoff"' in body
    assert 'data-kind="timer" data-outcome="pending"' in body
    assert "has-failure" in body and "↻ attempt 2" in page
    assert 'class="tl-mark mark-signal"' in body
    # the whole history, and the live part polls while open
    for event in ("WorkflowExecutionStarted", "ActivityTaskScheduled", "TimerStarted",
                  "WorkflowExecutionSignaled"):
        assert event in page
    assert 'hx-trigger="every 1s"' in body
    assert 'id="signal-form"' in body and 'id="terminate-form"' in body


def test_closed_run_shows_result_and_stops_polling(operator: Client, engine: Engine) -> None:
    start("w", "hello")
    engine.complete_workflow("w", {"greeting": "Hello, Ada!"})
    r = operator.get("/workflows/w")
    body = r.content.decode()
    assert "completed" in text(r) and '"greeting": "Hello, Ada!"' in text(r)
    assert "hx-trigger" not in body and 'id="signal-form"' not in body


def test_failed_run_shows_its_failure(operator: Client, engine: Engine) -> None:
    start("w", "hello")
    engine.complete_task("w", [{"kind": "fail_workflow",
                                "failure": {"type": "ValueError", "message": "bad order"}}])
    page = text(operator.get("/workflows/w"))
    assert "failed" in page and "Failure" in page and "bad order" in page


def test_run_page_picks_a_run_and_finds_odd_ids(operator: Client, engine: Engine) -> None:
    first = start("a/b?c#d%", "hello")
    engine.complete_workflow("a/b?c#d%")
    second = start("a/b?c#d%", "hello")
    listing = operator.get("/?workflow_id=a%2Fb%3Fc%23d%25").content.decode()
    links = re.findall(r'href="(/workflows/[^"]+)"', listing)
    assert len(links) == 2
    r = operator.get(links[1].replace("&amp;", "&"))
    assert r.status_code == 200 and str(first.run_id) in r.content.decode()
    latest = operator.get("/workflows/a/b%3Fc%23d%25")
    assert latest.status_code == 200 and str(second.run_id) in latest.content.decode()


@pytest.mark.parametrize("url", ["/workflows/nope", "/workflows/" + "x" * 10_000,
                                 "/workflows/w?run_id=not-a-uuid", "/workflows/a%00b",
                                 "/live/nope"])
def test_unknown_runs_give_a_page_not_a_500(operator: Client, url: str) -> None:
    start("w")
    r = operator.get(url)
    assert r.status_code == 404
    assert "no " in text(r).lower() and 'role="alert"' in r.content.decode()


def test_live_fragment_answers_204_until_something_changes(operator: Client,
                                                           engine: Engine) -> None:
    run = start("w")
    page = operator.get("/workflows/w").content.decode()
    live_url = re.search(r'hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert operator.get(live_url).status_code == 204
    services.workflow_signal(workflow_id="w", name="approve", input="Grace")
    changed = operator.get(live_url)
    assert changed.status_code == 200 and "WorkflowExecutionSignaled" in text(changed)
    assert 'hx-trigger="every 1s"' in changed.content.decode()
    engine.complete_workflow("w", "approved by Grace")
    closed = operator.get(f"/live/w?run_id={run.run_id}&v=stale")
    body = closed.content.decode()
    assert "completed" in text(closed) and "hx-trigger" not in body
    assert 'hx-swap-oob="outerHTML"' in body and "no more actions" in body


# ---- actions -------------------------------------------------------------------------------


def test_start_from_the_form(operator: Client) -> None:
    WorkerSession.objects.create(
        worker_id="w1", channel_name="c", engine_id="e", task_queue="default",
        workflow_types=["approval", "hello"], activity_types=[], connected_at=timezone.now(),
        last_seen_at=timezone.now())
    form = operator.get("/start/")
    assert form.status_code == 200 and '<option value="approval">' in form.content.decode()
    r = post(operator, "/start/", {"workflow_type": "approval", "workflow_id": "ap-1",
                                   "task_queue": "default", "input": '{"timeout": 300}',
                                   "execution_timeout": "600"})
    assert r.status_code == 302
    run = Execution.objects.get(workflow_id="ap-1")
    assert run.input == {"timeout": 300} and run.status == "running"
    assert r["Location"] == f"/workflows/ap-1?run_id={run.run_id}"
    page = operator.get(r["Location"])
    assert "Started approval 'ap-1'." in text(page)


def test_start_without_id_makes_one(operator: Client) -> None:
    r = post(operator, "/start/", {"workflow_type": "hello", "task_queue": "default",
                                   "input": ""})
    assert r.status_code == 302
    run = Execution.objects.get()
    assert run.input is None and len(run.workflow_id) == 36


@pytest.mark.parametrize(("data", "message"), [
    ({"input": "{not json"}, "Not valid JSON"),
    ({"input": "Grace"}, "Not valid JSON"),
    ({"workflow_id": "x" * 10_000}, "at most 255 characters"),
    ({"workflow_type": ""}, "This field is required"),
    ({"workflow_type": "a\x00b"}, "Null characters are not allowed"),
    ({"execution_timeout": "-1"}, "greater than or equal to 0.001"),
    ({"input": "[" * 100 + "]" * 100}, "nested deeper"),
])
def test_start_bad_input_gives_a_message(operator: Client, data: dict[str, str],
                                         message: str) -> None:
    r = post(operator, "/start/", {"workflow_type": "hello", "task_queue": "default", **data})
    assert r.status_code == 422
    assert message in text(r)
    assert not Execution.objects.exists()


def test_start_an_open_workflow_id_is_refused(operator: Client) -> None:
    start("dup")
    r = post(operator, "/start/", {"workflow_type": "hello", "workflow_id": "dup",
                                   "task_queue": "default"})
    assert r.status_code == 409
    assert "already" in text(r) and "dup" in text(r)


def test_signal(operator: Client) -> None:
    run = start("w")
    r = post(operator, "/signal/", {"workflow_id": "w", "run_id": str(run.run_id),
                                    "name": "approve", "input": '"Grace"'})
    assert r.status_code == 302 and r["Location"] == f"/workflows/w?run_id={run.run_id}"
    last = run.events.order_by("-event_id").first()
    assert last is not None and last.event_type == "WorkflowExecutionSignaled"
    assert last.attributes == {"signal_name": "approve", "input": "Grace"}
    assert "Signal 'approve' sent." in text(operator.get(r["Location"]))


@pytest.mark.parametrize(("data", "status", "message"), [
    ({"name": "approve", "input": "Grace"}, 422, "Not valid JSON"),
    ({"name": "", "input": ""}, 422, "This field is required"),
    ({"name": "x" * 10_000}, 422, "at most 255 characters"),
    ({"workflow_id": "x" * 10_000, "name": "s"}, 422, "does not name a valid run"),
    ({"workflow_id": "nope", "name": "s"}, 404, "no workflow 'nope'"),
    ({"run_id": "00000000-0000-0000-0000-000000000001", "name": "s"}, 404, "no workflow"),
    ({"run_id": "zzz", "name": "s"}, 422, "Not a run id"),
])
def test_signal_bad_input_gives_a_message(operator: Client, data: dict[str, str], status: int,
                                          message: str) -> None:
    start("w")
    r = post(operator, "/signal/", {"workflow_id": "w", **data})
    assert r.status_code == status
    assert message in text(r)
    assert Execution.objects.get(workflow_id="w").history_length == 2


def test_cancel(operator: Client) -> None:
    run = start("w")
    r = post(operator, "/cancel/", {"workflow_id": "w", "reason": "customer asked"})
    assert r.status_code == 302
    assert run.events.filter(event_type="WorkflowExecutionCancelRequested",
                             attributes__reason="customer asked").exists()
    assert "cancel requested" in text(operator.get(r["Location"]))


def test_terminate(operator: Client) -> None:
    run = start("w")
    r = post(operator, "/terminate/", {"workflow_id": "w", "run_id": str(run.run_id),
                                       "reason": "stuck"})
    assert r.status_code == 302
    run.refresh_from_db()
    assert run.status == "terminated"
    page = text(operator.get(r["Location"]))
    assert "terminated" in page and "Workflow terminated." in page


@pytest.mark.parametrize("url", ["/signal/", "/cancel/", "/terminate/"])
def test_actions_on_a_closed_run_are_refused_on_the_page(operator: Client, url: str) -> None:
    start("w")
    services.workflow_terminate(workflow_id="w")
    r = post(operator, url, {"workflow_id": "w", "name": "s"})
    assert r.status_code == 409
    assert "run_closed" in text(r) or "closed" in text(r)


def test_reason_too_long(operator: Client) -> None:
    start("w")
    r = post(operator, "/terminate/", {"workflow_id": "w", "reason": "x" * 5000})
    assert r.status_code == 422 and "at most 4096 characters" in text(r)
    assert Execution.objects.get(workflow_id="w").status == "running"


def test_actions_are_post_only(operator: Client) -> None:
    for url in ("/signal/", "/cancel/", "/terminate/"):
        assert operator.get(url).status_code == 405


# ---- workers -------------------------------------------------------------------------------


def test_workers_page(operator: Client) -> None:
    now = timezone.now()
    WorkerSession.objects.create(
        worker_id="wk-1", channel_name="c1", engine_id="e", identity="host-a@1",
        task_queue="default", workflow_types=["approval", "order"], activity_types=["greet"],
        max_workflow_tasks=4, max_activity_tasks=16, connected_at=now, last_seen_at=now)
    WorkerSession.objects.create(
        worker_id="wk-2", channel_name="c2", engine_id="e", identity="host-b@2",
        task_queue="batch", workflow_types=[], activity_types=["crunch"],
        max_workflow_tasks=0, max_activity_tasks=2, connected_at=now,
        last_seen_at=now - timedelta(minutes=5))
    run = start("w")
    Task.objects.filter(execution=run).update(state=TaskState.LEASED, lease_owner="wk-1",
                                             token="t-1")
    Task.objects.create(execution=run, kind=TaskKind.ACTIVITY, task_queue="default",
                        type_name="greet", state=TaskState.LEASED, scheduled_event_id=99,
                        lease_owner="wk-1", token="t-2", created_at=now)
    r = operator.get("/workers/")
    assert r.status_code == 200
    body = r.content.decode()
    row1 = body.split('data-worker-id="wk-1"')[1].split("</tr>")[0]
    assert "host-a@1" in row1 and "approval, order" in row1 and "greet" in row1
    assert "4 / 16" in row1 and re.search(r'class="num in-flight">1 / 1<', row1)
    row2 = body.split('data-worker-id="wk-2"')[1].split("</tr>")[0]
    assert "batch" in row2 and "0 / 2" in row2 and "silent" in row2


def test_workers_page_empty(operator: Client) -> None:
    assert "No worker is connected" in text(operator.get("/workers/"))
