"""Workflows and activities of tests/e2e/test_async_activities.py: async completion and
activity cancellation types. An activity that completes asynchronously writes its task token
to ``$ASYNC_TOKEN_DIR/<workflow id>``, where the test picks it up."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import sdk


@sdk.activity
def pay_later(ctx: sdk.ActivityContext, input: Any) -> Any:
    path = Path(os.environ["ASYNC_TOKEN_DIR"]) / ctx.info.workflow_id
    path.write_text(ctx.info.task_token)
    raise sdk.CompleteAsync()


@sdk.workflow
async def paid_elsewhere(ctx: sdk.WorkflowContext, input: Any) -> Any:
    timeout = float(input or 60)
    try:
        return {"result": await ctx.execute_activity(
            pay_later, None, start_to_close_timeout=timeout,
            retry_policy=sdk.RetryPolicy(maximum_attempts=1))}
    except sdk.ActivityError as err:
        cause = err.cause
        return {"timeout_type": err.timeout_type,
                "type": cause.type if isinstance(cause, sdk.ApplicationError) else None}


@sdk.activity
async def cleans_up_on_cancel(ctx: sdk.ActivityContext, input: Any) -> str:
    """Heartbeats until cancelled, then takes a second to clean up before it reports."""
    while True:
        try:
            ctx.heartbeat({"at": time.time()})
        except sdk.ActivityCancelledError:
            await asyncio.sleep(1)
            raise
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            await asyncio.sleep(1)
            raise


@sdk.workflow
async def cancels_its_activity(ctx: sdk.WorkflowContext, cancellation_type: str) -> Any:
    handle = ctx.start_activity(cleans_up_on_cancel, None, start_to_close_timeout=60,
                                heartbeat_timeout=5, cancellation_type=cancellation_type)
    await ctx.sleep(1)
    handle.cancel()
    try:
        await handle
    except asyncio.CancelledError:
        return "canceled"
    return "completed"
