"""Workflows and activities the chaos suite runs on real worker processes.

``CHAOS_WORKER_NAME`` names the worker process; ``CHAOS_STALL_WORKFLOW`` (seconds) makes this
worker stall inside its first workflow activation, and ``CHAOS_STALL_ACTIVITY`` inside every
``hold`` activity, so a test can kill it while it holds the task. ``CHAOS_STEP_LOG`` names a
file where each run of an ``add_one`` body is written, to count the bodies that ran again.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sdk
from tests.e2e.harness import log_step

STEPS = 5


@sdk.activity
def add_one(ctx: sdk.ActivityContext, n: int) -> int:
    log_step("CHAOS_STEP_LOG", ctx.info.workflow_id, ctx.info.activity_id, ctx.info.attempt)
    return n + 1


@sdk.workflow
async def chain(ctx: sdk.WorkflowContext, opts: dict[str, Any]) -> int:
    """``STEPS`` activities in a row around a short sleep: the chaos workload."""
    total = int(opts.get("start", 0))
    for i in range(STEPS):
        total = await ctx.execute_activity(add_one, total)
        if i == STEPS // 2:
            await ctx.sleep(float(opts.get("sleep", 0.5)))
    return total


@sdk.activity
def hold(ctx: sdk.ActivityContext, payload: Any) -> dict[str, Any]:
    """Report who ran the attempt, with what: after a worker dies mid-activity, the attempt
    that succeeds must show the original input and attempt number."""
    time.sleep(float(os.environ.get("CHAOS_STALL_ACTIVITY", "0")))
    return {"input": payload, "attempt": ctx.info.attempt,
            "worker": os.environ.get("CHAOS_WORKER_NAME", "?")}


@sdk.workflow
async def held(ctx: sdk.WorkflowContext, payload: Any) -> Any:
    return await ctx.execute_activity(hold, payload, start_to_close_timeout=60,
                                      retry_policy=sdk.RetryPolicy(maximum_attempts=5))


_stalled = False


@sdk.workflow
async def stall_once(ctx: sdk.WorkflowContext, payload: Any) -> Any:
    """Its first activation on a worker with ``CHAOS_STALL_WORKFLOW`` blocks that worker."""
    global _stalled
    stall = float(os.environ.get("CHAOS_STALL_WORKFLOW", "0"))
    if stall and not _stalled:
        _stalled = True
        time.sleep(stall)  # noqa: ASYNC251 (blocking the worker is the point)
    here = await ctx.execute_activity(hold, payload)
    return {"ran_on": here["worker"], "input": payload}


@sdk.workflow
async def waits_for_signal(ctx: sdk.WorkflowContext, _: Any) -> Any:
    sig = await ctx.wait_for_signal("go")
    return sig.input
