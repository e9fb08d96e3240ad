"""A run's page shows its updates in the history and the timeline."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.api.conftest import Engine
from workflows import services
from workflows.models import Execution

pytestmark = pytest.mark.django_db


def test_the_run_page_shows_accepted_and_completed_updates(operator: Client,
                                                           engine: Engine) -> None:
    services.workflow_start(workflow_type="cart", workflow_id="cart-1", task_queue="q")
    engine.complete_task("cart-1", [])
    services.workflow_update_accept(workflow_id="cart-1", run_id=None, update_id="u-77",
                                    name="add_item", args=["tea"])
    engine.complete_task("cart-1", [{"kind": "complete_update", "update_id": "u-77",
                                     "result": 1}])
    run = Execution.objects.get(workflow_id="cart-1")
    page = operator.get(f"/workflows/cart-1?run_id={run.run_id}").content.decode()
    assert "WorkflowExecutionUpdateAccepted" in page
    assert "WorkflowExecutionUpdateCompleted" in page
    assert 'data-kind="update"' in page and "update add_item" in page
