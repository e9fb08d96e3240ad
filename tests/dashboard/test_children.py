"""A run's page links its parent and its children both ways."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.api.conftest import Engine
from workflows import services
from workflows.models import Execution

pytestmark = pytest.mark.django_db


def test_the_run_page_links_parent_and_children(operator: Client, engine: Engine) -> None:
    services.workflow_start(workflow_type="family", workflow_id="mom", task_queue="q")
    engine.complete_task("mom", [
        {"kind": "start_child_workflow", "seq": 1, "workflow_type": "kid",
         "workflow_id": "kid 1"},
        {"kind": "start_child_workflow", "seq": 2, "workflow_type": "kid",
         "workflow_id": "kid/2"},
    ])
    mom = Execution.objects.get(workflow_id="mom")
    page = operator.get(f"/workflows/mom?run_id={mom.run_id}").content.decode()
    assert 'id="child-runs"' in page
    assert "/workflows/kid%201?run_id=" in page and "/workflows/kid%2F2?run_id=" in page
    assert 'id="parent-run"' not in page
    kid = Execution.objects.get(workflow_id="kid/2")
    page = operator.get(f"/workflows/kid%2F2?run_id={kid.run_id}").content.decode()
    assert 'id="parent-run"' in page and f"/workflows/mom?run_id={mom.run_id}" in page
    assert 'id="child-runs"' not in page
