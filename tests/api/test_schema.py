"""OpenAPI 3 at /api/schema/, Swagger UI at /api/docs/."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.test import Client

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/workflows", "post"): "workflow_start",
    ("/api/workflows", "get"): "workflow_list",
    ("/api/workflows:batch", "post"): "workflow_start_batch",
    ("/api/workflows/{workflow_id}", "get"): "workflow_describe",
    ("/api/workflows/{workflow_id}/history", "get"): "workflow_history",
    ("/api/workflows/{workflow_id}/result", "get"): "workflow_result",
    ("/api/workflows/{workflow_id}/signals", "post"): "workflow_signal",
    ("/api/workflows/{workflow_id}/cancel", "post"): "workflow_cancel",
    ("/api/workflows/{workflow_id}/terminate", "post"): "workflow_terminate",
    ("/api/activities/{task_token}/complete", "post"): "activity_complete",
    ("/api/activities/{task_token}/fail", "post"): "activity_fail",
    ("/api/activities/{task_token}/heartbeat", "post"): "activity_heartbeat",
    ("/api/workflows/{workflow_id}/queries/{name}", "post"): "workflow_query",
    ("/api/workflows/{workflow_id}/updates/{name}", "post"): "workflow_update",
    ("/healthz", "get"): "healthz",
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    r = Client().get("/api/schema/")
    assert r.status_code == 200
    assert r["Content-Type"].startswith("application/vnd.oai.openapi")
    loaded: dict[str, Any] = yaml.safe_load(r.content)
    return loaded


def test_schema_is_openapi_3_with_every_operation(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.")
    found = {(path, method): op["operationId"] for path, ops in schema["paths"].items()
             for method, op in ops.items()}
    assert found == OPERATIONS


def test_schema_documents_bodies_errors_and_auth(schema: dict[str, Any]) -> None:
    start = schema["paths"]["/api/workflows"]["post"]
    ref = start["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert body["required"] == ["workflow_type"]
    assert {"workflow_type", "input", "workflow_id", "task_queue",
            "execution_timeout"} <= set(body["properties"])
    assert {"201", "400", "401", "403", "409", "413", "422"} <= set(start["responses"])
    assert start["security"] == [{"bearerAuth": []}]
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer"}
    history = schema["paths"]["/api/workflows/{workflow_id}/history"]["get"]
    assert {p["name"] for p in history["parameters"]} == {
        "workflow_id", "run_id", "after", "limit", "wait"}
    health = schema["paths"]["/healthz"]["get"]
    assert {"200", "503"} <= set(health["responses"])


def test_schema_as_json() -> None:
    r = Client().get("/api/schema/", {"format": "json"})
    assert r.status_code == 200
    assert json.loads(r.content)["openapi"].startswith("3.")


def test_schema_validates() -> None:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    generator = SchemaGenerator()  # type: ignore[no-untyped-call]
    validate_schema(generator.get_schema(request=None, public=True))  # type: ignore[no-untyped-call]


def test_swagger_ui() -> None:
    r = Client().get("/api/docs/")
    assert r.status_code == 200
    assert b"swagger" in r.content.lower()
