"""Check a chaos run's database: ``python -m tests.chaos.audit`` prints a JSON report.

Run in the stack's environment (its ``DATABASE_URL`` / ``SCHED_DATA_DIR``). For every run:
the history's event ids are dense, no command was recorded twice (one scheduled event per
activity or timer ``seq``, at most one closing event), every activity result is recorded
once, and the snapshot columns equal the fold of the history. A closed run keeps no task or
timer row. The report lists what is wrong; an empty ``problems`` list means nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schedproject.settings")

import django

django.setup()

from dispatch.models import Task  # noqa: E402
from timers.models import Timer  # noqa: E402
from workflows.core.state import fold  # noqa: E402
from workflows.models import Execution, HistoryEvent  # noqa: E402

SCHEDULING = {"ActivityTaskScheduled", "TimerStarted", "MarkerRecorded",
              "StartChildWorkflowExecutionInitiated"}
RESULTS = {"ActivityTaskCompleted", "ActivityTaskFailed", "ActivityTaskTimedOut",
           "ActivityTaskCanceled"}
CLOSING = {"WorkflowExecutionCompleted", "WorkflowExecutionFailed", "WorkflowExecutionCanceled",
           "WorkflowExecutionTerminated", "WorkflowExecutionTimedOut",
           "WorkflowExecutionContinuedAsNew"}
MAX_PROBLEMS = 50


def audit_run(run: Execution, events: list[HistoryEvent]) -> list[str]:
    where = f"{run.workflow_id} ({run.run_id})"
    problems = []
    ids = [e.event_id for e in events]
    if ids != list(range(1, len(ids) + 1)):
        problems.append(f"{where}: event ids are not dense: {ids[:20]}")
    scheduled = Counter((e.event_type, e.attributes.get("seq")) for e in events
                        if e.event_type in SCHEDULING)
    problems += [f"{where}: {kind} seq {seq} recorded {n} times"
                 for (kind, seq), n in scheduled.items() if n > 1]
    results = Counter(e.attributes.get("scheduled_event_id") for e in events
                      if e.event_type in RESULTS)
    problems += [f"{where}: activity {sid} has {n} results" for sid, n in results.items() if n > 1]
    closing = sum(1 for e in events if e.event_type in CLOSING)
    if closing > 1:
        problems.append(f"{where}: {closing} closing events")
    state = fold(e.to_core() for e in events)
    if state.to_dict() != run.state:
        problems.append(f"{where}: state column differs from the fold of the history")
    if run.status != state.status.value or run.next_event_id != len(events) + 1:
        problems.append(f"{where}: status/next_event_id {run.status}/{run.next_event_id} "
                        f"differ from the history ({state.status.value}/{len(events) + 1})")
    if not state.is_open and run.closed_at is None:
        problems.append(f"{where}: closed in history but closed_at is empty")
    return problems


def audit(prefix: str = "") -> dict[str, Any]:
    runs = Execution.objects.filter(workflow_id__startswith=prefix).order_by("id")
    problems: list[str] = []
    statuses: Counter[str] = Counter()
    events_total = 0
    for run in runs.iterator(chunk_size=200):
        statuses[run.status] += 1
        events = list(HistoryEvent.objects.filter(execution=run).order_by("event_id"))
        events_total += len(events)
        problems += audit_run(run, events)
    closed = runs.exclude(status="running")
    dangling_tasks = Task.objects.filter(execution__in=closed).count()
    dangling_timers = Timer.objects.filter(execution__in=closed).count()
    if dangling_tasks:
        problems.append(f"{dangling_tasks} task rows of closed runs")
    if dangling_timers:
        problems.append(f"{dangling_timers} timer rows of closed runs")
    return {"runs": sum(statuses.values()), "statuses": dict(statuses), "events": events_total,
            "tasks_left": Task.objects.count(), "timers_left": Timer.objects.count(),
            "problem_count": len(problems), "problems": problems[:MAX_PROBLEMS]}


if __name__ == "__main__":
    print(json.dumps(audit(sys.argv[1] if len(sys.argv) > 1 else "")))
