"""The run page's "Download history (JSON)": the whole history as the API gives it, in a file
``sdk.testing.Replayer`` replays."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

import sdk
from sdk.testing import Replayer
from tests.api.conftest import Engine
from timers.models import Timer
from timers.services import timer_fire
from workflows import services

pytestmark = pytest.mark.django_db


@sdk.workflow(name="download.greet")
async def greet(ctx: sdk.WorkflowContext, name: str) -> str:
    await ctx.sleep(5)
    return f"hi {name}"


@sdk.workflow(name="download.greet")
async def greet_changed(ctx: sdk.WorkflowContext, name: str) -> str:
    return f"hello {name}"


def finished_run(engine: Engine) -> Any:
    run = services.workflow_start(workflow_type="download.greet", workflow_id="greet/ann #1",
                                  task_queue="default", input="ann")
    engine.complete_task("greet/ann #1", [{"kind": "start_timer", "seq": 1,
                                           "duration_ms": 5000}])
    timer = Timer.objects.get(execution=run)
    timer_fire(timer_id=timer.pk, now=timer.fire_at)
    engine.complete_workflow("greet/ann #1", "hi ann")
    run.refresh_from_db()
    assert run.status == "completed"
    return run


def test_the_run_page_links_to_the_download(operator: Client, engine: Engine) -> None:
    run = finished_run(engine)
    page = operator.get(f"/workflows/greet%2Fann%20%231?run_id={run.run_id}").content.decode()
    assert "Download history (JSON)" in page
    assert f'href="/history/greet%2Fann%20%231?run_id={run.run_id}"' in page


def test_the_download_is_the_apis_history_and_replays(operator: Client, engine: Engine,
                                                       api_client: APIClient) -> None:
    run = finished_run(engine)
    r = operator.get(f"/history/greet%2Fann%20%231?run_id={run.run_id}")
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    assert r["Content-Disposition"] == (
        f'attachment; filename="greet_ann__1.{run.run_id}.history.json"')
    doc = json.loads(r.content)
    pages: list[dict[str, Any]] = []
    after = 0
    while True:  # GET .../history, two events a page, the pages joined
        query: dict[str, str | int] = {"run_id": str(run.run_id), "after": after, "limit": 2}
        api = api_client.get("/api/workflows/greet%2Fann%20%231/history", query).json()
        pages.extend(api["events"])
        if api["next_after"] is None:
            break
        after = api["next_after"]
    assert doc["events"] == pages
    assert {k: doc[k] for k in ("workflow_id", "run_id", "workflow_type", "status")} == {
        "workflow_id": "greet/ann #1", "run_id": str(run.run_id),
        "workflow_type": "download.greet", "status": "completed"}

    Replayer([greet]).replay(r.content)
    with pytest.raises(sdk.NonDeterminismError):
        Replayer([greet_changed]).replay(r.content)


def test_the_download_needs_the_view_permission(client: Client, engine: Engine) -> None:
    run = finished_run(engine)
    r = client.get(f"/history/greet%2Fann%20%231?run_id={run.run_id}")
    assert r.status_code == 302 and r["Location"].startswith("/login/")


def test_an_unknown_run_is_a_404_page(operator: Client) -> None:
    assert operator.get("/history/nope").status_code == 404
