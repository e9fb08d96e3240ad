"""Workflows and activities for the payload tests: numbers of any size, strings no database
can store, and payloads over ``SCHED_MAX_PAYLOAD_BYTES``."""

from __future__ import annotations

import time
from typing import Any

import sdk

TWO_TRIES = sdk.RetryPolicy(initial_interval=0.1, maximum_attempts=2)
BAD_RESULTS: dict[str, Any] = {"nul": "a\x00b", "surrogate": "ok \ud800", "nan": float("nan"),
                               "big": "x" * 3_000_000}


@sdk.activity
def echo(ctx: sdk.ActivityContext, value: Any) -> Any:
    return value


@sdk.activity
def returns(ctx: sdk.ActivityContext, what: str) -> Any:
    return BAD_RESULTS[what]


@sdk.activity
def heartbeats_big(ctx: sdk.ActivityContext, size: int) -> str:
    for _ in range(100):
        ctx.heartbeat("x" * size)
        time.sleep(0.1)
    return "the activity was not stopped"


@sdk.workflow
async def echo_input(ctx: sdk.WorkflowContext, value: Any) -> Any:
    return await ctx.execute_activity(echo, value)


async def _failure(ctx: sdk.WorkflowContext, activity: Any, arg: Any) -> Any:
    try:
        result = await ctx.execute_activity(activity, arg, retry_policy=TWO_TRIES,
                                            start_to_close_timeout=60)
    except sdk.ActivityError as err:
        return {"type": err.type, "message": err.message, "attempt": err.attempt}
    return {"unexpected": repr(result)[:100]}


@sdk.workflow
async def bad_result(ctx: sdk.WorkflowContext, what: str) -> Any:
    return await _failure(ctx, returns, what)


@sdk.workflow
async def big_heartbeat(ctx: sdk.WorkflowContext, size: int) -> Any:
    return await _failure(ctx, heartbeats_big, size)


@sdk.workflow
async def big_result(ctx: sdk.WorkflowContext, size: int) -> Any:
    return "x" * size


@sdk.workflow
async def big_activity_input(ctx: sdk.WorkflowContext, size: int) -> Any:
    return await ctx.execute_activity(echo, "x" * size)


@sdk.workflow
async def waits_for_signal(ctx: sdk.WorkflowContext, _: Any) -> Any:
    return (await ctx.wait_for_signal("go")).input
