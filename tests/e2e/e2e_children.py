"""Workflows of the child-workflow and continue-as-new end-to-end tests (their own module and
worker, on the task queue ``children``)."""

from __future__ import annotations

from typing import Any

import sdk


@sdk.workflow
async def kid(ctx: sdk.WorkflowContext, n: int) -> dict[str, Any]:
    await ctx.sleep(0.05)
    return {"doubled": n * 2, "parent": ctx.info.parent_workflow_id}


@sdk.workflow
async def broken_kid(ctx: sdk.WorkflowContext, _: Any) -> None:
    raise sdk.ApplicationError("the kid broke", type="KidBroke", non_retryable=True)


@sdk.workflow
async def waiting_kid(ctx: sdk.WorkflowContext, _: Any) -> Any:
    signal = await ctx.wait_for_signal("hello")
    return {"heard": signal.input}


@sdk.workflow
async def parent(ctx: sdk.WorkflowContext, n: int) -> Any:
    return await ctx.execute_child_workflow(kid, n, workflow_id=f"{ctx.info.workflow_id}-kid")


@sdk.workflow
async def parent_of_broken(ctx: sdk.WorkflowContext, _: Any) -> Any:
    try:
        await ctx.execute_child_workflow(broken_kid)
    except sdk.ChildWorkflowError as err:
        return {"status": err.status, "cause": err.cause["type"],
                "message": err.cause["message"]}
    return "unexpected success"


@sdk.workflow
async def parent_of_two(ctx: sdk.WorkflowContext, ids: list[str]) -> Any:
    await ctx.start_child_workflow(waiting_kid, workflow_id=ids[0])
    await ctx.start_child_workflow(waiting_kid, workflow_id=ids[1], parent_close_policy="abandon")
    await ctx.wait_for_signal("never")


@sdk.workflow
async def parent_signals(ctx: sdk.WorkflowContext, _: Any) -> Any:
    handle = await ctx.start_child_workflow(waiting_kid)
    await handle.signal("hello", {"from": ctx.info.workflow_id})
    return {"child": await handle, "child_id": handle.workflow_id}


@sdk.workflow
async def rolling(ctx: sdk.WorkflowContext, n: int) -> Any:
    if n < 3:
        ctx.continue_as_new(n + 1)
    return {"n": n, "continued_from": ctx.info.continued_from_run_id}


@sdk.workflow
async def rolling_slowly(ctx: sdk.WorkflowContext, n: int) -> Any:
    await ctx.sleep(0.3)  # so a result request waits across each continue-as-new
    if n < 2:
        ctx.continue_as_new(n + 1)
    return {"n": n}


@sdk.workflow
async def flaky_kid(ctx: sdk.WorkflowContext, n: int) -> dict[str, Any]:
    """Fails its first two runs; the engine retries it under the parent's retry policy."""
    if ctx.info.attempt <= 2:
        raise sdk.ApplicationError(f"run {ctx.info.attempt} fails", type="Flaky")
    return {"tripled": n * 3, "attempt": ctx.info.attempt}


@sdk.workflow
async def parent_of_flaky(ctx: sdk.WorkflowContext, n: int) -> Any:
    return await ctx.execute_child_workflow(
        flaky_kid, n, workflow_id=f"{ctx.info.workflow_id}-flaky",
        retry_policy=sdk.RetryPolicy(initial_interval=0.1, maximum_attempts=5))


@sdk.workflow
async def parent_of_too_flaky(ctx: sdk.WorkflowContext, _: Any) -> Any:
    try:
        await ctx.execute_child_workflow(
            flaky_kid, 1, workflow_id=f"{ctx.info.workflow_id}-flaky",
            retry_policy=sdk.RetryPolicy(initial_interval=0.1, maximum_attempts=2))
    except sdk.ChildWorkflowError as err:
        return {"status": err.status, "message": err.cause["message"]}
    return "unexpected success"


@sdk.workflow
async def slow_kid(ctx: sdk.WorkflowContext, _: Any) -> dict[str, Any]:
    """Its first run outlasts its execution timeout; the retry returns at once."""
    if ctx.info.attempt == 1:
        await ctx.sleep(3600)
    return {"attempt": ctx.info.attempt}


@sdk.workflow
async def parent_of_slow(ctx: sdk.WorkflowContext, _: Any) -> Any:
    return await ctx.execute_child_workflow(
        slow_kid, workflow_id=f"{ctx.info.workflow_id}-slow", execution_timeout=8,
        retry_policy=sdk.RetryPolicy(initial_interval=0.1, maximum_attempts=2))
