"""Transition services: each applies one transition in one transaction, or nothing."""

from __future__ import annotations

from ._write import Lessee, Outcome
from .executions import (
    get_run,
    workflow_request_cancel,
    workflow_signal,
    workflow_start,
    workflow_terminate,
)
from .tasks import (
    activity_task_complete,
    activity_task_fail,
    activity_task_heartbeat,
    workflow_task_complete,
    workflow_task_fail,
)
from .timers import timer_fire

__all__ = [
    "Lessee", "Outcome", "activity_task_complete", "activity_task_fail",
    "activity_task_heartbeat", "get_run", "timer_fire", "workflow_request_cancel",
    "workflow_signal", "workflow_start", "workflow_task_complete", "workflow_task_fail",
    "workflow_terminate",
]
