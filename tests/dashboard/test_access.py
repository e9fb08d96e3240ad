"""The dashboard's doors: names checked as the API checks them, ids quoted whole in every
link, and each page and action open only to the users whose permissions allow it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.dashboard.conftest import OPERATOR_PERMISSIONS, user_with
from tests.dashboard.test_views import post, start, text
from workflows.models import Execution

pytestmark = pytest.mark.django_db


# ---- names and ids -------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "says"), [
    ("workflow_id", "abc\ndef", "U+000A at position 3"),
    ("workflow_id", "..", "'..'"),
    ("workflow_type", "t\x85", "U+0085 at position 1"),
    ("task_queue", " q", "U+0020 at position 0"),
])
def test_the_start_form_refuses_bad_names(operator: Client, field: str, value: str,
                                          says: str) -> None:
    data = {"workflow_type": "hello", "task_queue": "default", field: value}
    r = post(operator, "/start/", data)
    assert r.status_code == 422
    assert says in text(r)
    assert not Execution.objects.exists()


def test_the_signal_form_refuses_a_bad_signal_name(operator: Client) -> None:
    run = start("w")
    r = post(operator, "/signal/", {"workflow_id": "w", "run_id": str(run.run_id),
                                    "name": "go\n"})
    assert r.status_code == 422 and "U+000A at position 2" in text(r)
    assert run.events.count() == 2


def _links(body: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', body)]


@pytest.mark.parametrize("workflow_id", ["a/b?c#d", "100% & more", "line\nfeed", "x/../y"])
def test_every_id_is_linked_quoted_and_its_page_opens(operator: Client,
                                                      workflow_id: str) -> None:
    """A run whose id holds URL syntax (or, from before names were checked, a line feed)
    is listed, linked with its id quoted whole, and its page and live part open."""
    run = start(workflow_id)
    listing = operator.get("/")
    assert listing.status_code == 200
    link = f"/workflows/{quote(workflow_id, safe='')}?run_id={run.run_id}"
    assert link in _links(listing.content.decode())
    page = operator.get(link)
    assert page.status_code == 200
    assert workflow_id in page.content.decode().replace("&amp;", "&").replace("&#x27;", "'")
    live = f"/live/{quote(workflow_id, safe='')}?run_id={run.run_id}"
    assert live in page.content.decode().replace("&amp;", "&")
    assert operator.get(live).status_code == 200
    all_runs = f"/?workflow_id={quote(workflow_id, safe='')}"
    assert all_runs in _links(page.content.decode())
    # The action forms name the run, so actions work on it too.
    r = post(operator, "/terminate/", {"workflow_id": workflow_id, "run_id": str(run.run_id)})
    assert r.status_code == 302 and r["Location"] == link
    assert Execution.objects.get(pk=run.pk).status == "terminated"


# ---- roles ---------------------------------------------------------------------------------

ACTIONS = {
    "start": ("/start/", {"workflow_type": "hello", "workflow_id": "new", "task_queue": "q"}),
    "signal": ("/signal/", {"name": "go"}),
    "cancel": ("/cancel/", {}),
    "terminate": ("/terminate/", {}),
}
PERMISSION = {"start": "workflows.start_workflow", "signal": "workflows.signal_workflow",
              "cancel": "workflows.cancel_workflow",
              "terminate": "workflows.terminate_workflow"}
BUTTONS = {"signal": "Send signal", "cancel": "Request cancel", "terminate": "Terminate"}


def login(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def act(client: Client, action: str, run: Execution) -> Any:
    url, data = ACTIONS[action]
    if action != "start":
        data = {**data, "workflow_id": run.workflow_id, "run_id": str(run.run_id)}
    return post(client, url, data)


def test_a_user_without_permissions_sees_and_does_nothing() -> None:
    run = start("w")
    client = login(user_with("nobody"))
    for url in ("/", f"/workflows/w?run_id={run.run_id}", f"/live/w?run_id={run.run_id}",
                "/workers/", "/start/"):
        r = client.get(url)
        assert r.status_code == 403, url
        assert "permission" in text(r)
    for action in ACTIONS:
        assert act(client, action, run).status_code == 403, action
    assert Execution.objects.get().history_length == 2
    assert not Execution.objects.filter(workflow_id="new").exists()


def test_a_viewer_sees_runs_but_no_buttons_and_cannot_act() -> None:
    run = start("w")
    client = login(user_with("viewer", "workflows.view_execution"))
    page = client.get(f"/workflows/w?run_id={run.run_id}")
    assert page.status_code == 200
    body = page.content.decode()
    assert not any(label in body for label in BUTTONS.values())
    assert 'id="actions"' not in body
    listing = client.get("/")
    assert listing.status_code == 200 and "Start a workflow" not in listing.content.decode()
    assert "Workers" not in listing.content.decode()
    assert client.get("/workers/").status_code == 403
    for action in ACTIONS:
        r = act(client, action, run)
        assert r.status_code == 403 and PERMISSION[action] in text(r), action
    assert Execution.objects.get().history_length == 2


@pytest.mark.parametrize("action", ["signal", "cancel", "terminate"])
def test_each_action_permission_grants_that_action_and_its_button_only(action: str) -> None:
    run = start("w")
    client = login(user_with("one", "workflows.view_execution", PERMISSION[action]))
    body = client.get(f"/workflows/w?run_id={run.run_id}").content.decode()
    for other, label in BUTTONS.items():
        assert (label in body) == (other == action), other
    for other in ACTIONS:
        if other != action:
            assert act(client, other, run).status_code == 403, other
    assert act(client, action, run).status_code == 302
    assert Execution.objects.get(pk=run.pk).history_length > 2


def test_the_start_permission_opens_the_start_page() -> None:
    client = login(user_with("starter", "workflows.view_execution", "workflows.start_workflow"))
    assert "Start a workflow" in client.get("/").content.decode()
    assert client.get("/start/").status_code == 200
    assert act(client, "start", start("unused")).status_code == 302
    assert Execution.objects.filter(workflow_id="new").exists()


def test_the_workers_page_needs_its_permission() -> None:
    client = login(user_with("ops", "dispatch.view_workersession"))
    assert client.get("/workers/").status_code == 200
    assert client.get("/").status_code == 403


@pytest.mark.parametrize("kind", ["staff", "operator"])
def test_staff_and_operators_may_do_everything(kind: str) -> None:
    if kind == "staff":
        user = User.objects.create_user("boss", password="pw-boss-123", is_staff=True)
    else:
        user = user_with("op", *OPERATOR_PERMISSIONS)
    client = login(user)
    run = start("w")
    body = client.get(f"/workflows/w?run_id={run.run_id}").content.decode()
    assert all(label in body for label in BUTTONS.values())
    assert client.get("/workers/").status_code == 200
    assert act(client, "signal", run).status_code == 302
    assert act(client, "terminate", run).status_code == 302
    assert act(client, "start", run).status_code == 302


def test_an_inactive_staff_user_is_refused() -> None:
    user = User.objects.create_user("gone", password="pw-gone-123", is_staff=True)
    client = login(user)
    user.is_active = False
    user.save()
    r = client.get("/")
    assert r.status_code in (302, 403)


# ---- login rate limiting -------------------------------------------------------------------


@pytest.fixture
def _fresh_login_counts() -> Any:
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _try(client: Client, username: str, password: str, addr: str = "10.0.0.1") -> Any:
    return client.post("/login/", {"username": username, "password": password},
                       REMOTE_ADDR=addr)


@pytest.mark.usefixtures("_fresh_login_counts")
def test_logins_are_rate_limited_per_user_and_address(settings: Any) -> None:
    import dataclasses

    settings.SCHED = dataclasses.replace(settings.SCHED, login_attempts=3)
    user_with("target", "workflows.view_execution")
    client = Client()
    for _ in range(3):
        r = _try(client, "target", "guess")
        assert r.status_code == 200 and "didn't match" in text(r)
    # Locked out now, even with the right password, and told so ...
    r = _try(client, "target", "pw-target-123")
    assert r.status_code == 200 and "Too many failed logins" in text(r)
    assert "_auth_user_id" not in client.session
    # ... also at the admin's login, which shares the backend.
    r = client.post("/admin/login/", {"username": "target", "password": "pw-target-123"},
                    REMOTE_ADDR="10.0.0.1")
    assert r.status_code == 200 and "_auth_user_id" not in client.session
    # Another address, or another user, is not locked out.
    r = _try(Client(), "target", "pw-target-123", addr="10.0.0.2")
    assert r.status_code == 302


@pytest.mark.usefixtures("_fresh_login_counts")
def test_a_successful_login_clears_the_count(settings: Any) -> None:
    import dataclasses

    settings.SCHED = dataclasses.replace(settings.SCHED, login_attempts=3)
    user_with("target", "workflows.view_execution")
    client = Client()
    _try(client, "target", "guess")
    _try(client, "target", "guess")
    assert _try(client, "target", "pw-target-123").status_code == 302
    client.logout()
    _try(client, "target", "guess")
    _try(client, "target", "guess")
    assert _try(client, "target", "pw-target-123").status_code == 302


# ---- behind a TLS-terminating proxy ------------------------------------------------------------


@pytest.mark.usefixtures("_fresh_login_counts")
@pytest.mark.parametrize("documented", [True, False])
def test_a_login_behind_a_tls_proxy_needs_and_works_with_the_documented_settings(
        settings: Any, monkeypatch: pytest.MonkeyPatch, documented: bool) -> None:
    from schedproject import config

    # docs/production.env's values (or none), read as the settings module reads them.
    monkeypatch.setenv("SCHED_PROXY_SSL_HEADER", "X-Forwarded-Proto: https" if documented else "")
    monkeypatch.setenv("SCHED_CSRF_TRUSTED_ORIGINS",
                       "https://sched.example.com" if documented else "")
    loaded = config.load()
    settings.SECURE_PROXY_SSL_HEADER = loaded.proxy_ssl_header
    settings.CSRF_TRUSTED_ORIGINS = list(loaded.csrf_trusted_origins)
    settings.ALLOWED_HOSTS = ["sched.example.com"]
    user_with("target", "workflows.view_execution")
    # The proxy speaks plain HTTP to the engine and says the browser used HTTPS.
    client = Client(enforce_csrf_checks=True, HTTP_HOST="sched.example.com",
                    HTTP_X_FORWARDED_PROTO="https")
    assert client.get("/login/").status_code == 200
    r = client.post("/login/", {"username": "target", "password": "pw-target-123",
                                "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
                    HTTP_ORIGIN="https://sched.example.com",
                    HTTP_REFERER="https://sched.example.com/login/")
    if documented:
        assert r.status_code == 302 and "_auth_user_id" in client.session
    else:  # the engine sees http://, the browser's Origin says https://: CSRF refuses it
        assert r.status_code == 403 and "_auth_user_id" not in client.session
