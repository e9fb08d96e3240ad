"""The benchmark's workflows: small activities, so the engine's own cost is what is measured."""

from __future__ import annotations

from typing import Any

import sdk


@sdk.activity
async def step(ctx: sdk.ActivityContext, n: int) -> int:
    return n + 1


@sdk.workflow
async def three_steps(ctx: sdk.WorkflowContext, n: int) -> int:
    for _ in range(3):
        n = await ctx.execute_activity(step, n)
    return n


@sdk.workflow
async def three_local_steps(ctx: sdk.WorkflowContext, n: int) -> int:
    """``three_steps`` with local activities: one workflow task, three markers."""
    for _ in range(3):
        n = await ctx.execute_local_activity(step, n, start_to_close_timeout=10)
    return n


@sdk.workflow
async def sleep_one(ctx: sdk.WorkflowContext, seconds: float) -> Any:
    await ctx.sleep(seconds)
    return "woke"


@sdk.workflow
async def long_history(ctx: sdk.WorkflowContext, count: int) -> int:
    n = 0
    for _ in range(count):
        n = await ctx.execute_activity(step, n)
    return n
