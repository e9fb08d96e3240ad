"""Bearer-token authentication: 401 without a live token, 403 for a worker-only token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from workflows.models import ApiToken, TokenScope

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("GET", "/api/workflows"), ("POST", "/api/workflows"), ("GET", "/api/workflows/w"),
    ("GET", "/api/workflows/w/history"), ("GET", "/api/workflows/w/result"),
    ("POST", "/api/workflows/w/signals"), ("POST", "/api/workflows/w/cancel"),
    ("POST", "/api/workflows/w/terminate"),
]


def client_with(header: str | None) -> APIClient:
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    return client


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Bearer nope", "Basic dXNlcjpwYXNz", "Token abc",
    "Bearer a b", "Bearer " + "x" * 5000, "Bearer sched_\u00e9",
])
def test_missing_or_bad_token_is_401(method: str, path: str, header: str | None) -> None:
    r = client_with(header).generic(method, path, "{}", content_type="application/json")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"
    assert r.json()["error"]["message"]
    assert r["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("scope", [TokenScope.ADMIN, TokenScope.API])
def test_admin_and_api_tokens_may_use_the_api(scope: str) -> None:
    _, raw = ApiToken.issue("t", scope=scope)
    assert client_with(f"Bearer {raw}").get("/api/workflows").status_code == 200


def test_scheme_is_case_insensitive(api_token: str) -> None:
    assert client_with(f"bearer {api_token}").get("/api/workflows").status_code == 200


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_worker_token_is_403(method: str, path: str) -> None:
    _, raw = ApiToken.issue("w", scope=TokenScope.WORKER)
    r = client_with(f"Bearer {raw}").generic(method, path, "{}",
                                             content_type="application/json")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


def test_revoked_token_is_401(api_client: APIClient, api_token: str) -> None:
    assert api_client.get("/api/workflows").status_code == 200
    ApiToken.objects.update(revoked_at=timezone.now())
    r = api_client.get("/api/workflows")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


def test_last_used_at_is_written_at_most_once_a_minute(api_client: APIClient,
                                                       django_assert_num_queries: object) -> None:
    token = ApiToken.objects.get()
    assert token.last_used_at is None
    api_client.get("/api/workflows")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    api_client.get("/api/workflows")
    token.refresh_from_db()
    assert token.last_used_at == first  # no second write within the minute
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
    api_client.get("/api/workflows")
    token.refresh_from_db()
    assert token.last_used_at > first


def test_a_request_within_the_minute_writes_nothing(api_client: APIClient) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    api_client.get("/api/workflows")
    with CaptureQueriesContext(connection) as queries:
        api_client.get("/api/workflows")
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert writes == []


@pytest.mark.parametrize("path", ["/healthz", "/api/schema/", "/api/docs/"])
def test_public_endpoints_need_no_token(path: str) -> None:
    assert client_with(None).get(path).status_code == 200
    assert client_with("Bearer garbage").get(path).status_code == 200
