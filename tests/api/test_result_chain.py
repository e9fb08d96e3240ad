"""``GET /api/workflows/{id}/result`` answers for the last run of a continue-as-new chain."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from workflows import services
from workflows.models import Execution

from .conftest import Engine

pytestmark = pytest.mark.django_db


def chain(engine: Engine, hops: int) -> list[Execution]:
    services.workflow_start(workflow_type="rolling", workflow_id="roll", task_queue="q",
                            input=0)
    for n in range(hops):
        engine.complete_task("roll", [{"kind": "continue_as_new", "input": n + 1}])
    return list(Execution.objects.filter(workflow_id="roll").order_by("id"))


@pytest.mark.parametrize("given_run", [None, "first", "middle"])
def test_the_result_follows_the_chain_to_its_last_run(api_client: APIClient, engine: Engine,
                                                      given_run: str | None) -> None:
    runs = chain(engine, 3)
    engine.complete_workflow("roll", {"n": 3})
    params: dict[str, Any] = {}
    if given_run is not None:
        params["run_id"] = str(runs[0 if given_run == "first" else 1].run_id)
    answer = api_client.get("/api/workflows/roll/result", params)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["result"], body["run_id"]) == (
        "completed", {"n": 3}, str(runs[-1].run_id))


def test_a_wait_on_an_old_run_waits_for_the_last_one(api_client: APIClient, engine: Engine) -> None:
    runs = chain(engine, 1)
    answer = api_client.get("/api/workflows/roll/result",
                     {"run_id": str(runs[0].run_id), "wait": "0.3"})
    body = answer.json()
    assert (body["status"], body["run_id"]) == ("running", str(runs[-1].run_id))
