"""After a series of API actions the stored snapshot equals the fold of the history."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import Engine
from workflows.core.state import fold
from workflows.models import Execution


def assert_snapshot_matches_history(run: Execution) -> None:
    run.refresh_from_db()
    events = [e.to_core() for e in run.events.order_by("event_id")]
    folded = fold(events)
    assert run.core_state() == folded
    assert run.status == folded.status.value
    assert run.next_event_id == folded.next_event_id == len(events) + 1


@pytest.mark.django_db
def test_snapshot_equals_fold_after_api_actions(api_client: APIClient, engine: Engine) -> None:
    def post(path: str, body: dict[str, object]) -> None:
        r = api_client.post(path, body, format="json")
        assert r.status_code in (201, 202), r.content

    post("/api/workflows", {"workflow_type": "Order", "workflow_id": "o", "input": 1})
    post("/api/workflows/o/signals", {"name": "a", "input": [1]})
    engine.complete_task("o", [
        {"kind": "schedule_activity", "seq": 1, "activity_type": "charge"},
        {"kind": "start_timer", "seq": 2, "duration_ms": 60_000},
    ])
    post("/api/workflows/o/signals", {"name": "b"})
    engine.fail_task("o")
    post("/api/workflows/o/cancel", {"reason": "r"})
    run = Execution.objects.get(workflow_id="o")
    assert_snapshot_matches_history(run)
    post("/api/workflows/o/terminate", {"reason": "done"})
    assert_snapshot_matches_history(run)

    post("/api/workflows", {"workflow_type": "Order", "workflow_id": "o"})
    engine.complete_workflow("o", {"ok": True})
    for each in Execution.objects.filter(workflow_id="o"):
        assert_snapshot_matches_history(each)
