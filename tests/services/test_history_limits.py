"""A run whose history passes the limit fails with ``history_too_large`` instead of growing;
the size of the history is kept as it grows."""

from __future__ import annotations

import pytest

from dispatch.models import Task
from workflows import services
from workflows.errors import Conflict
from workflows.models import Execution, HistoryEvent
from workflows.services import _write

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_past_the_event_limit_fails_with_history_too_large(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_write, "MAX_EVENTS", 10)
    run = services.workflow_start(workflow_type="T", workflow_id="w")
    for i in range(20):
        try:
            services.workflow_signal(workflow_id="w", name="s", input=i)
        except Conflict as refused:
            assert refused.code == "run_closed"
            break
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.failure is not None and run.failure["details"]["cause"] == "history_too_large"
    kinds = list(HistoryEvent.objects.filter(execution=run).order_by("event_id")
                 .values_list("event_type", flat=True))
    assert kinds[-1] == "WorkflowExecutionFailed" and len(kinds) == 12  # 11 > 10, then fail
    assert not Task.objects.filter(execution=run).exists()


def test_a_run_past_the_byte_limit_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_write, "MAX_BYTES", 5_000)
    services.workflow_start(workflow_type="T", workflow_id="w")
    services.workflow_signal(workflow_id="w", name="s", input="x" * 6_000)
    run = Execution.objects.get(workflow_id="w")
    assert run.status == "failed" and run.history_size_bytes > 6_000
    assert run.failure is not None and run.failure["details"]["cause"] == "history_too_large"


def test_the_history_size_grows_with_its_events() -> None:
    run = services.workflow_start(workflow_type="T", workflow_id="w")
    run.refresh_from_db()
    before = run.history_size_bytes
    services.workflow_signal(workflow_id="w", name="s", input="y" * 1_000)
    run.refresh_from_db()
    assert before > 0 and run.history_size_bytes >= before + 1_000
    assert run.status == "running"
