"""Names and ids: what may name a workflow, a type, a queue or a signal is one rule
(``sdk.protocol.names``) at every door, and an id that passes it round-trips through every
URL the API and the SDK build."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.test import Client
from rest_framework.test import APIClient

import sdk
from workflows.models import Execution

pytestmark = pytest.mark.django_db

# (value, the character the message must name, where)
BAD_NAMES: list[tuple[str, str]] = [
    ("abc\ndef", "U+000A at position 3"),
    ("tab\there", "U+0009 at position 3"),
    ("del\x7f", "U+007F at position 3"),
    ("c1\x85x", "U+0085 at position 2"),
    ("\x1b[31mred", "U+001B at position 0"),
    (" leading", "U+0020 at position 0"),
    ("trailing ", "U+0020 at position 8"),
    ("nbsp\u00a0", "U+00A0 at position 4"),
    (".", "'.'"),
    ("..", "'..'"),
]

START = {"workflow_type": "T"}


def post(client: APIClient, path: str, body: Any) -> Any:
    return client.generic("POST", path, json.dumps(body), content_type="application/json")


def assert_invalid_name(r: Any, field: str, says: str) -> None:
    assert r.status_code == 422, r.content
    error = r.json()["error"]
    assert error["code"] == "invalid_name", error
    assert field in error["fields"], error
    assert says in error["message"], error
    assert error["message"].startswith(field), error


@pytest.mark.parametrize("field", ["workflow_id", "workflow_type", "task_queue"])
@pytest.mark.parametrize(("value", "says"), BAD_NAMES)
def test_start_refuses_a_bad_name_saying_which_character(api_client: APIClient, field: str,
                                                         value: str, says: str) -> None:
    assert_invalid_name(post(api_client, "/api/workflows", {**START, field: value}), field, says)
    assert Execution.objects.count() == 0


@pytest.mark.parametrize(("value", "says"), BAD_NAMES[:3])
def test_a_batch_item_with_a_bad_name_fails_alone(api_client: APIClient, value: str,
                                                  says: str) -> None:
    r = post(api_client, "/api/workflows:batch",
             {"workflows": [{**START, "workflow_id": value}, {**START, "workflow_id": "ok"}]})
    assert r.status_code == 200
    bad, good = r.json()["results"]
    assert bad["error"]["code"] == "invalid_name" and says in bad["error"]["message"]
    assert good["workflow_id"] == "ok"
    assert list(Execution.objects.values_list("workflow_id", flat=True)) == ["ok"]


@pytest.mark.parametrize(("value", "says"), BAD_NAMES)
def test_signal_names_are_names(api_client: APIClient, value: str, says: str) -> None:
    post(api_client, "/api/workflows", {**START, "workflow_id": "w"})
    r = post(api_client, "/api/workflows/w/signals", {"name": value})
    assert_invalid_name(r, "name", says)
    assert api_client.get("/api/workflows/w").json()["history_length"] == 2


@pytest.mark.parametrize("suffix", ["", "/history", "/result", "/signals", "/cancel"])
def test_an_impossible_id_in_the_path_is_invalid_name(api_client: APIClient,
                                                       suffix: str) -> None:
    method = "POST" if suffix in ("/signals", "/cancel") else "GET"
    body = json.dumps({"name": "s"} if suffix == "/signals" else {})
    r = api_client.generic(method, f"/api/workflows/a%0Ab{suffix}", body,
                           content_type="application/json")
    assert_invalid_name(r, "workflow_id", "U+000A at position 1")


def test_list_filters_refuse_bad_names(api_client: APIClient) -> None:
    r = api_client.get("/api/workflows", {"task_queue": "q\r"})
    assert_invalid_name(r, "task_queue", "U+000D at position 1")


def test_a_name_problem_beside_another_problem_is_invalid_input(api_client: APIClient) -> None:
    r = post(api_client, "/api/workflows", {"workflow_id": "a\nb", "execution_timeout": -1})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert {"workflow_id", "workflow_type", "execution_timeout"} <= set(error["fields"])


@pytest.mark.parametrize("name", ["with space", "ünïcødé", "a/b?c#d", "%2F", "...", "a.b",
                                  "emoji \U0001f600", "\u200bzero-width"])
def test_printable_names_are_still_accepted(api_client: APIClient, name: str) -> None:
    r = post(api_client, "/api/workflows",
             {"workflow_type": name, "task_queue": name, "workflow_id": name})
    assert r.status_code == 201, r.content
    assert Execution.objects.get().workflow_id == name


# ---- round trips ---------------------------------------------------------------------------

TRICKY_IDS = ["a/b?c#d", "100%", "%2F", "x/../y", "...", "a+b c", "q=1&r=2", "ends/"]


@pytest.mark.parametrize("workflow_id", TRICKY_IDS)
def test_tricky_ids_round_trip_through_rest(api_client: APIClient, workflow_id: str) -> None:
    r = post(api_client, "/api/workflows", {**START, "workflow_id": workflow_id})
    assert r.status_code == 201, r.content
    path = f"/api/workflows/{quote(workflow_id, safe='')}"
    assert r["Location"].startswith(path + "?run_id=")
    assert api_client.get(path).json()["workflow_id"] == workflow_id
    assert post(api_client, f"{path}/signals", {"name": "go"}).status_code == 202
    history = api_client.get(f"{path}/history").json()["events"]
    assert history[-1]["attributes"]["signal_name"] == "go"
    assert post(api_client, f"{path}/terminate", {}).status_code == 202
    assert api_client.get(f"{path}/result").json()["status"] == "terminated"


class DjangoTransport(httpx.BaseTransport):
    """httpx requests answered by Django's test client, in this test's transaction: the
    raw path (as the SDK encoded it) goes in as the request's path."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode("ascii")
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        answer = self.client.generic(request.method, path, request.read(),
                                     content_type="application/json", headers=headers)
        return httpx.Response(answer.status_code, content=answer.content,
                              headers={"Content-Type": answer["Content-Type"]})


@pytest.fixture
def sdk_client(api_token: str) -> Iterator[sdk.Client]:
    """``sdk.Client`` talking to this test's engine in process, through the SDK's real URL
    building and the engine's real views."""
    with sdk.Client("http://testserver", token=api_token,
                    transport=DjangoTransport(Client())) as client:
        yield client


@pytest.mark.parametrize("workflow_id", TRICKY_IDS)
def test_tricky_ids_round_trip_through_the_sdk(sdk_client: sdk.Client,
                                               workflow_id: str) -> None:
    handle = sdk_client.start_workflow("T", workflow_id=workflow_id)
    assert handle.workflow_id == workflow_id
    again = sdk_client.get_workflow_handle(workflow_id)
    assert again.describe()["workflow_id"] == workflow_id
    again.signal("go", 1)
    assert again.history()[-1]["attributes"]["signal_name"] == "go"
    again.terminate("done")
    assert Execution.objects.get(workflow_id=workflow_id).status == "terminated"
