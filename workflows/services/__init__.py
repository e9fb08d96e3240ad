"""Transition services: each applies one transition in one transaction, or nothing.

The public API of the engine's writes: edges and the other apps' services (dispatch,
timers) use these names only, never the private modules.
"""

from __future__ import annotations

from ._write import (
    Lessee,
    Outcome,
    hear_from_child,
    lock_execution,
    start_attempt_timers,
    write_transition,
)
from .activities import (
    activity_complete_by_token,
    activity_fail_by_token,
    activity_heartbeat_by_token,
    activity_task_hand_off,
)
from .children import CHILD_TIMER_KINDS, act_on_child
from .executions import (
    FAIL,
    ID_CONFLICT_POLICIES,
    USE_EXISTING,
    StartRequest,
    get_run,
    time_out_run,
    workflow_request_cancel,
    workflow_signal,
    workflow_start,
    workflow_start_handing_off,
    workflow_start_many,
    workflow_terminate,
)
from .tasks import (
    activity_close,
    activity_task_complete,
    activity_task_fail,
    activity_task_heartbeat,
    check_lease,
    rejected,
    stale,
    workflow_task_complete,
    workflow_task_fail,
    workflow_task_start,
    workflow_task_time_out,
    write_activity_attempt,
)
from .updates import workflow_update_accept

__all__ = [
    "CHILD_TIMER_KINDS",
    "FAIL",
    "ID_CONFLICT_POLICIES",
    "USE_EXISTING",
    "Lessee",
    "Outcome",
    "StartRequest",
    "act_on_child",
    "activity_close",
    "activity_complete_by_token",
    "activity_fail_by_token",
    "activity_heartbeat_by_token",
    "activity_task_complete",
    "activity_task_fail",
    "activity_task_hand_off",
    "activity_task_heartbeat",
    "check_lease",
    "get_run",
    "hear_from_child",
    "lock_execution",
    "rejected",
    "stale",
    "start_attempt_timers",
    "time_out_run",
    "workflow_request_cancel",
    "workflow_signal",
    "workflow_start",
    "workflow_start_handing_off",
    "workflow_start_many",
    "workflow_task_complete",
    "workflow_task_fail",
    "workflow_task_start",
    "workflow_task_time_out",
    "workflow_terminate",
    "workflow_update_accept",
    "write_activity_attempt",
    "write_transition",
]
