"""Django admin: executions and their histories are view-only; tokens can be revoked."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from workflows import services
from workflows.models import ApiToken, Execution, HistoryEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(db: None) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw-123456789")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def run() -> Execution:
    services.workflow_start(workflow_type="Order", workflow_id="order-1", input={"n": 1})
    services.workflow_signal(workflow_id="order-1", name="approve", input=None)
    return Execution.objects.get(workflow_id="order-1")


def test_changelist_lists_executions(admin: Client, run: Execution) -> None:
    r = admin.get("/admin/workflows/execution/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "order-1" in html and str(run.run_id) in html and "Order" in html
    assert admin.get("/admin/workflows/execution/", {"status__exact": "running"}).status_code == 200


def test_search_by_workflow_id_and_run_id(admin: Client, run: Execution) -> None:
    services.workflow_start(workflow_type="Other", workflow_id="zzz")
    r = admin.get("/admin/workflows/execution/", {"q": "order"})
    assert "order-1" in r.content.decode() and ">zzz<" not in r.content.decode()
    r = admin.get("/admin/workflows/execution/", {"q": str(run.run_id)})
    assert "order-1" in r.content.decode()


def test_execution_page_shows_the_whole_history(admin: Client, run: Execution) -> None:
    r = admin.get(f"/admin/workflows/execution/{run.pk}/change/")
    assert r.status_code == 200
    html = r.content.decode()
    for event_type in ("WorkflowExecutionStarted", "WorkflowTaskScheduled",
                       "WorkflowExecutionSignaled"):
        assert event_type in html
    assert html.index("WorkflowExecutionStarted") < html.index("WorkflowExecutionSignaled")
    assert 'name="_save"' not in html  # view only
    assert "deletelink" not in html


def test_execution_and_events_cannot_be_changed_or_deleted(admin: Client,
                                                           run: Execution) -> None:
    base = f"/admin/workflows/execution/{run.pk}"
    assert admin.post(f"{base}/change/", {"workflow_id": "hacked"}).status_code == 403
    assert admin.post(f"{base}/delete/", {"post": "yes"}).status_code == 403
    assert admin.get(f"{base}/delete/").status_code == 403
    assert admin.get("/admin/workflows/execution/add/").status_code == 403
    assert admin.post("/admin/workflows/execution/", {
        "action": "delete_selected", "_selected_action": [run.pk]}).status_code in (200, 302)
    run.refresh_from_db()
    assert run.workflow_id == "order-1"
    assert Execution.objects.count() == 1
    assert HistoryEvent.objects.filter(execution=run).count() == 3
    assert admin.get("/admin/workflows/historyevent/").status_code == 404  # not registered


def test_token_admin_lists_and_revokes(admin: Client) -> None:
    token, raw = ApiToken.issue("ci", scope="api")
    r = admin.get("/admin/workflows/apitoken/")
    assert r.status_code == 200 and token.prefix in r.content.decode()
    assert raw not in r.content.decode()
    page = admin.get(f"/admin/workflows/apitoken/{token.pk}/change/").content.decode()
    assert token.digest in page and 'name="digest"' not in page  # shown, read-only
    r = admin.post("/admin/workflows/apitoken/", {"action": "revoke",
                                                  "_selected_action": [token.pk]})
    assert r.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert admin.get("/admin/workflows/apitoken/add/").status_code == 403


def test_non_staff_cannot_see_the_admin(run: Execution) -> None:
    r = Client().get(f"/admin/workflows/execution/{run.pk}/change/")
    assert r.status_code == 302 and "/admin/login/" in r["Location"]
