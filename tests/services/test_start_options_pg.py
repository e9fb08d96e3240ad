"""Racing start options on PostgreSQL: concurrent signal-with-starts of one workflow id make
one run holding every signal; concurrent ``use_existing`` starts share one run.

SQLite serializes writers, so these races are only meaningful on PostgreSQL.
"""

from __future__ import annotations

import pytest
from django.db import connection

from workflows.core.events import EventType
from workflows.models import Execution
from workflows.services import Outcome, workflow_start_handing_off

from .conftest import QUEUE, WORKFLOW, assert_consistent, history
from .test_concurrency_pg import THREADS, race

E = EventType

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _postgres_only(db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...)")


def test_racing_signal_with_starts_make_one_run_with_every_signal() -> None:
    outcomes: list[Outcome] = []

    def signal_with_start() -> Outcome:
        outcome = workflow_start_handing_off(
            workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="race", start_signal="go",
            start_signal_input="x", lessee=None)
        outcomes.append(outcome)
        return outcome

    wins, codes = race(signal_with_start)
    assert (wins, codes) == (THREADS, [])
    [run] = Execution.objects.filter(workflow_id="race")
    assert {o.execution.run_id for o in outcomes} == {run.run_id}
    assert sorted(o.started for o in outcomes) == [False] * (THREADS - 1) + [True]
    types = [e.event_type for e in history(run)]
    assert types.count(E.WORKFLOW_EXECUTION_SIGNALED) == THREADS
    assert types[:3] == [E.WORKFLOW_EXECUTION_STARTED, E.WORKFLOW_EXECUTION_SIGNALED,
                         E.WORKFLOW_TASK_SCHEDULED]
    assert_consistent(run)


def test_racing_use_existing_starts_share_one_run() -> None:
    outcomes: list[Outcome] = []

    def use_existing() -> Outcome:
        outcome = workflow_start_handing_off(
            workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="race",
            id_conflict_policy="use_existing", lessee=None)
        outcomes.append(outcome)
        return outcome

    wins, codes = race(use_existing)
    assert (wins, codes) == (THREADS, [])
    [run] = Execution.objects.filter(workflow_id="race")
    assert {o.execution.run_id for o in outcomes} == {run.run_id}
    assert sorted(o.started for o in outcomes) == [False] * (THREADS - 1) + [True]
    assert_consistent(run)


def test_racing_retries_of_one_signal_with_start_signal_once() -> None:
    wins, codes = race(lambda: workflow_start_handing_off(
        workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="race", start_signal="go",
        request_id="one-request", lessee=None))
    assert (wins, codes) == (THREADS, [])
    [run] = Execution.objects.filter(workflow_id="race")
    types = [e.event_type for e in history(run)]
    assert types.count(E.WORKFLOW_EXECUTION_SIGNALED) == 1
    assert_consistent(run)
