"""Bad input is answered 400/404/405/413/415/422 with a JSON error body, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from workflows.models import Execution

pytestmark = pytest.mark.django_db

OK_START = {"workflow_type": "T"}


def post_raw(client: APIClient, path: str, body: Any,
             content_type: str = "application/json") -> Any:
    return client.generic("POST", path, body, content_type=content_type)


@pytest.fixture
def run(api_client: APIClient) -> str:
    r = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "w1"},
                        format="json")
    assert r.status_code == 201
    return "w1"


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.content
    assert r["Content-Type"].startswith("application/json")
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize("body", [
    b"{", b"{'a': 1}", b"nul", b'{"workflow_type": "T",}', b"\xff\xfe\x00",
    b'{"workflow_type": NaN}', b'{"workflow_type": Infinity}', b"[" * 100_000,
    b'\xef\xbb\xbf{"workflow_type": "T"}',
])
def test_malformed_json_is_400(api_client: APIClient, body: bytes) -> None:
    assert_error(post_raw(api_client, "/api/workflows", body), 400, "malformed_json")


BAD_STARTS: list[tuple[Any, str]] = [
    ({}, "workflow_type"),
    ({"workflow_type": ""}, "workflow_type"),
    ({"workflow_type": None}, "workflow_type"),
    ({"workflow_type": 12}, "workflow_type"),
    ({"workflow_type": ["T"]}, "workflow_type"),
    ({"workflow_type": {"a": 1}}, "workflow_type"),
    ({"workflow_type": True}, "workflow_type"),
    ({"workflow_type": "x" * 256}, "workflow_type"),
    ({"workflow_type": "x" * 10_000}, "workflow_type"),
    ({**OK_START, "workflow_id": ""}, "workflow_id"),
    ({**OK_START, "workflow_id": 7}, "workflow_id"),
    ({**OK_START, "workflow_id": "x" * 256}, "workflow_id"),
    ({**OK_START, "workflow_id": "x" * 10_000}, "workflow_id"),
    ({**OK_START, "task_queue": ""}, "task_queue"),
    ({**OK_START, "task_queue": "q" * 256}, "task_queue"),
    ({**OK_START, "task_queue": 1}, "task_queue"),
    ({**OK_START, "execution_timeout": 0}, "execution_timeout"),
    ({**OK_START, "execution_timeout": -5}, "execution_timeout"),
    ({**OK_START, "execution_timeout": "10"}, "execution_timeout"),
    ({**OK_START, "execution_timeout": True}, "execution_timeout"),
    ({**OK_START, "execution_timeout": 1e300}, "execution_timeout"),
    ({**OK_START, "execution_timeout": 11 * 365 * 86400}, "execution_timeout"),
    ({**OK_START, "execution_timeout": [1]}, "execution_timeout"),
    ({**OK_START, "input": "a\x00b"}, "input"),
    ({**OK_START, "input": {"k\x00": 1}}, "input"),
    ({**OK_START, "input": ["\ud83d"]}, "input"),
    ({**OK_START, "input": {"deep": json.loads("[" * 200 + "]" * 200)}}, "input"),
    ({**OK_START, "surprise": 1}, "surprise"),
    ({**OK_START, "workflowId": "typo"}, "workflowId"),
]


@pytest.mark.parametrize(("body", "field"), BAD_STARTS)
def test_invalid_start_is_422_naming_the_field(api_client: APIClient, body: Any,
                                                field: str) -> None:
    r = post_raw(api_client, "/api/workflows", json.dumps(body))
    error = assert_error(r, 422, "invalid_input")
    assert field in error["fields"], error
    assert Execution.objects.count() == 0


# A name's characters: refused with their own code (tests/api/test_names.py has the rest).
BAD_NAME_STARTS: list[tuple[Any, str]] = [
    ({"workflow_type": "a\x00b"}, "workflow_type"),
    ({"workflow_type": "\ud800"}, "workflow_type"),
    ({**OK_START, "workflow_id": "nul\x00"}, "workflow_id"),
    ({**OK_START, "workflow_id": "lone \udfff"}, "workflow_id"),
]


@pytest.mark.parametrize(("body", "field"), BAD_NAME_STARTS)
def test_unstorable_names_are_422_invalid_name(api_client: APIClient, body: Any,
                                               field: str) -> None:
    r = post_raw(api_client, "/api/workflows", json.dumps(body))
    error = assert_error(r, 422, "invalid_name")
    assert field in error["fields"], error
    assert Execution.objects.count() == 0


def test_huge_number_is_422_not_500(api_client: APIClient) -> None:
    r = post_raw(api_client, "/api/workflows",
                 '{"workflow_type": "T", "input": 1e400}')
    assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize("body", ["[]", "[1, 2]", '"text"', "42", "null", "true"])
def test_non_object_bodies_are_422(api_client: APIClient, body: str) -> None:
    assert_error(post_raw(api_client, "/api/workflows", body), 422, "invalid_input")


def test_empty_body_is_422_missing_fields(api_client: APIClient) -> None:
    error = assert_error(post_raw(api_client, "/api/workflows", b""), 422, "invalid_input")
    assert "workflow_type" in error["fields"]


def test_body_over_the_limit_is_413(api_client: APIClient) -> None:
    limit = settings.SCHED.max_payload_bytes
    body = json.dumps({"workflow_type": "T", "input": "x" * limit})
    assert_error(post_raw(api_client, "/api/workflows", body), 413, "payload_too_large")
    assert Execution.objects.count() == 0


def test_parser_counts_what_it_reads_not_only_the_header() -> None:
    """A body larger than its (missing or false) Content-Length is refused as it is read."""
    import io

    from django.test import RequestFactory

    from workflows.api.errors import PayloadTooLarge
    from workflows.api.parsers import LimitedJSONParser

    limit = settings.SCHED.max_payload_bytes
    request = RequestFactory().post("/", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    stream = io.BytesIO(json.dumps({"input": "x" * limit}).encode())
    with pytest.raises(PayloadTooLarge):
        LimitedJSONParser().parse(stream, "application/json", {"request": request})


def test_body_just_under_the_limit_is_accepted(api_client: APIClient) -> None:
    limit = settings.SCHED.max_payload_bytes
    body = json.dumps({"workflow_type": "T", "input": ""})
    body = json.dumps({"workflow_type": "T", "input": "x" * (limit - len(body) - 10)})
    assert post_raw(api_client, "/api/workflows", body).status_code == 201


def test_request_data_too_big_is_mapped_to_413() -> None:
    from django.core.exceptions import RequestDataTooBig

    from workflows.api.errors import to_response

    r = to_response(RequestDataTooBig("too big"))
    assert r.status_code == 413
    assert r.data["error"]["code"] == "payload_too_large"


def test_wrong_content_type_is_415(api_client: APIClient) -> None:
    r = post_raw(api_client, "/api/workflows", "workflow_type=T",
                 content_type="application/x-www-form-urlencoded")
    assert_error(r, 415, "unsupported_media_type")


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/api/workflows"), ("PUT", "/api/workflows"),
    ("GET", "/api/workflows/w1/signals"), ("GET", "/api/workflows/w1/cancel"),
    ("POST", "/api/workflows/w1"), ("DELETE", "/api/workflows/w1"),
    ("POST", "/api/workflows/w1/history"), ("POST", "/api/workflows/w1/result"),
])
def test_wrong_method_is_405(api_client: APIClient, run: str, method: str, path: str) -> None:
    assert_error(api_client.generic(method, path), 405, "method_not_allowed")


@pytest.mark.parametrize("path", [
    "/api/workflows/nope", "/api/workflows/nope/history", "/api/workflows/nope/result",
])
def test_unknown_workflow_is_404(api_client: APIClient, path: str) -> None:
    assert_error(api_client.get(path), 404, "not_found")


@pytest.mark.parametrize("action", ["signals", "cancel", "terminate"])
def test_actions_on_unknown_workflow_are_404(api_client: APIClient, action: str) -> None:
    body = {"name": "s"} if action == "signals" else {}
    assert_error(api_client.post(f"/api/workflows/nope/{action}", body, format="json"),
                 404, "not_found")


def test_unknown_run_id_is_404(api_client: APIClient, run: str) -> None:
    r = api_client.get(f"/api/workflows/{run}",
                       {"run_id": "00000000-0000-0000-0000-000000000000"})
    assert_error(r, 404, "not_found")


BAD_QUERIES: list[tuple[str, dict[str, str], str]] = [
    ("", {"run_id": "not-a-uuid"}, "run_id"),
    ("", {"run_id": "x" * 10_000}, "run_id"),
    ("", {"bogus": "1"}, "bogus"),
    ("/history", {"after": "-1"}, "after"),
    ("/history", {"after": "one"}, "after"),
    ("/history", {"after": str(10**30)}, "after"),
    ("/history", {"limit": "0"}, "limit"),
    ("/history", {"limit": "10001"}, "limit"),
    ("/history", {"limit": "1e3"}, "limit"),
    ("/history", {"wait": "soon"}, "wait"),
    ("/history", {"wait": "-1"}, "wait"),
    ("/history", {"wait": "nan"}, "wait"),
    ("/history", {"wait": "inf"}, "wait"),
    ("/history", {"wait": "1" * 2000}, "wait"),
    ("/result", {"wait": "soon"}, "wait"),
    ("/result", {"wait": ""}, "wait"),
    ("/result", {"wait": "-0.5"}, "wait"),
    ("/result", {"run_id": "nope"}, "run_id"),
]


@pytest.mark.parametrize(("suffix", "query", "field"), BAD_QUERIES)
def test_invalid_query_is_422(api_client: APIClient, run: str, suffix: str,
                              query: dict[str, str], field: str) -> None:
    error = assert_error(api_client.get(f"/api/workflows/{run}{suffix}", query), 422,
                         "invalid_input")
    assert field in error["fields"]


def _cursor(pk: object) -> str:
    raw = json.dumps(["2024-01-01T00:00:00+00:00", pk]).encode()
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(("query", "field"), [
    ({"status": "sleeping"}, "status"), ({"page_size": "0"}, "page_size"),
    ({"page_size": "1001"}, "page_size"), ({"page_size": "many"}, "page_size"),
    ({"cursor": "!!!"}, "cursor"), ({"cursor": "bm9wZQ"}, "cursor"),
    ({"cursor": "x" * 5000}, "cursor"), ({"cursor": _cursor(10**30)}, "cursor"),
    ({"cursor": _cursor(-1)}, "cursor"), ({"cursor": _cursor("1")}, "cursor"),
    ({"workflow_id": "x" * 256}, "workflow_id"),
    ({"workflow_type": "a\x00"}, "workflow_type"), ({"sort": "asc"}, "sort"),
])
def test_invalid_list_query_is_422(api_client: APIClient, query: dict[str, str],
                                   field: str) -> None:
    code = "invalid_name" if "\x00" in query.get(field, "") else "invalid_input"
    error = assert_error(api_client.get("/api/workflows", query), 422, code)
    assert field in error["fields"]


BAD_ACTIONS: list[tuple[str, Any, str]] = [
    ("signals", {}, "name"),
    ("signals", {"name": ""}, "name"),
    ("signals", {"name": 5}, "name"),
    ("signals", {"name": "n" * 256}, "name"),
    ("signals", {"name": "s\x00"}, "name"),
    ("signals", {"name": "s", "input": "\x00"}, "input"),
    ("signals", {"name": "s", "run_id": "abc"}, "run_id"),
    ("signals", {"name": "s", "run_id": 12}, "run_id"),
    ("signals", {"name": "s", "payload": 1}, "payload"),
    ("signals", [], "non_field_errors"),
    ("cancel", {"reason": 5}, "reason"),
    ("cancel", {"reason": "r" * 5000}, "reason"),
    ("cancel", {"reason": "\ud800"}, "reason"),
    ("cancel", {"why": "x"}, "why"),
    ("terminate", {"reason": ["x"]}, "reason"),
    ("terminate", {"run_id": "zzz"}, "run_id"),
    ("terminate", "stop", "non_field_errors"),
]


@pytest.mark.parametrize(("action", "body", "field"), BAD_ACTIONS)
def test_invalid_action_bodies_are_422(api_client: APIClient, run: str, action: str,
                                       body: Any, field: str) -> None:
    r = post_raw(api_client, f"/api/workflows/{run}/{action}", json.dumps(body))
    name_chars = field == "name" and body.get("name") == "s\x00"
    error = assert_error(r, 422, "invalid_name" if name_chars else "invalid_input")
    assert field in error["fields"]
    assert api_client.get(f"/api/workflows/{run}").json()["history_length"] == 2


@pytest.mark.parametrize("action", ["signals", "cancel", "terminate"])
def test_malformed_action_bodies_are_400(api_client: APIClient, run: str, action: str) -> None:
    assert_error(post_raw(api_client, f"/api/workflows/{run}/{action}", "{"), 400,
                 "malformed_json")


@pytest.mark.parametrize("workflow_id", ["a%00b", "x" * 256, "%00"])
@pytest.mark.parametrize(("method", "suffix"), [
    ("GET", ""), ("GET", "/history"), ("GET", "/result"), ("POST", "/signals"),
    ("POST", "/cancel"), ("POST", "/terminate"),
])
def test_impossible_workflow_ids_in_the_path_are_422(api_client: APIClient, workflow_id: str,
                                                      method: str, suffix: str) -> None:
    body = json.dumps({"name": "s"} if suffix == "/signals" else {})
    r = api_client.generic(method, f"/api/workflows/{workflow_id}{suffix}", body,
                           content_type="application/json")
    error = assert_error(r, 422, "invalid_name" if "%00" in workflow_id else "invalid_input")
    assert "workflow_id" in error["fields"]


def test_unrouted_api_url_is_json_404(api_client: APIClient, settings: Any) -> None:
    settings.DEBUG = False
    r = api_client.get("/api/nothing-here")
    assert_error(r, 404, "not_found")


def test_unexpected_errors_become_a_json_500(api_client: APIClient, monkeypatch: Any,
                                             caplog: Any) -> None:
    from workflows import selectors

    def explode(**kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(selectors, "execution_list", explode)
    r = api_client.get("/api/workflows")
    assert_error(r, 500, "internal_error")
    assert "bug" not in r.content.decode()
    assert any("unhandled error" in rec.message for rec in caplog.records)
