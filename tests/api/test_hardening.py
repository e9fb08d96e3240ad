"""Small doors: a NUL in the admin's filters, the database going away, a token no header
could carry. Each is a clear 4xx/503 with a code, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from workflows import services


@pytest.fixture
def admin(db: None) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw-123456789")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("query", [
    "workflow_type=%00", "task_queue=a%00b", "status=%00", "q=%00", "o=%00", "%00=1",
])
@pytest.mark.parametrize("model", ["execution", "apitoken"])
def test_a_nul_in_the_admin_list_is_400(admin: Client, query: str, model: str) -> None:
    services.workflow_start(workflow_type="T", workflow_id="w")
    r = admin.get(f"/admin/workflows/{model}/?{query}")
    assert r.status_code == 400
    assert "NUL" in r.content.decode()


@pytest.mark.django_db
def test_a_lone_surrogate_token_is_401() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer sched_\udcff")
    r = client.get("/api/workflows")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


@pytest.fixture
def database_down(transactional_db: None) -> Iterator[None]:
    """The default database's address made unreachable (a real failed connection, on the
    backend the suite runs on), then restored."""
    original = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent/sched/down.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT="1")
        options = dict(connection.settings_dict.get("OPTIONS") or {})
        options.pop("pool", None)
        connection.settings_dict["OPTIONS"] = options
        if hasattr(connection, "close_pool"):
            connection.close_pool()
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(original)
        if hasattr(connection, "close_pool"):
            connection.close_pool()


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/workflows", None),
    ("POST", "/api/workflows", {"workflow_type": "T"}),
    ("GET", "/api/workflows/w/result", None),
])
def test_the_api_answers_503_while_the_database_is_down(database_down: None, method: str,
                                                        path: str, body: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer sched_whatever")
    r = client.generic(method, path, "" if body is None else json.dumps(body),
                       content_type="application/json")
    assert r.status_code == 503, r.content
    assert r.json()["error"]["code"] == "database_unavailable"
    assert int(r["Retry-After"]) > 0


# ---- deployment defaults -------------------------------------------------------------------


@pytest.mark.django_db
def test_api_docs_load_nothing_from_a_cdn(client: Client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "cdn." not in body and "jsdelivr" not in body and "unpkg" not in body
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                  "favicon-32x32.png"):
        url = f"/static/vendor/swagger-ui/{asset}"
        assert url in body
        served = client.get(url)
        assert served.status_code == 200 and b"".join(served.streaming_content)  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_metrics_need_the_token_when_one_is_set(client: Client, settings: Any) -> None:
    import dataclasses

    assert client.get("/metrics").status_code == 200  # no token configured: open
    settings.SCHED = dataclasses.replace(settings.SCHED, metrics_token="scrape-me")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert r.status_code == 200 and b"sched_workflows_started" in r.content
