"""Workflows and activities the end-to-end tests run on real worker processes.

``E2E_WORKER_NAME`` names the worker process (to see which worker ran an activity) and
``E2E_VARIANT`` switches the code of ``versioned`` (to test non-determinism on redeploy).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import sdk

FAST_RETRY = sdk.RetryPolicy(initial_interval=0.1, backoff_coefficient=1.5, maximum_interval=1)


@sdk.activity
def flaky(ctx: sdk.ActivityContext, fail_times: int) -> dict[str, Any]:
    if ctx.info.attempt <= fail_times:
        raise RuntimeError(f"attempt {ctx.info.attempt} fails")
    return {"attempt": ctx.info.attempt}


@sdk.workflow
async def retries(ctx: sdk.WorkflowContext, fail_times: int) -> Any:
    return await ctx.execute_activity(flaky, fail_times, retry_policy=FAST_RETRY)


@sdk.activity
def refuse(ctx: sdk.ActivityContext, _: Any) -> None:
    raise sdk.ApplicationError("card declined", type="CardDeclined", non_retryable=True)


@sdk.workflow
async def non_retryable(ctx: sdk.WorkflowContext, _: Any) -> Any:
    try:
        await ctx.execute_activity(refuse, retry_policy=FAST_RETRY)
    except sdk.ActivityError as err:
        return {"type": err.type, "message": err.message, "attempt": err.attempt}
    return "unexpected success"


@sdk.activity
def heartbeater(ctx: sdk.ActivityContext, _: Any) -> Any:
    if ctx.info.attempt == 1:
        ctx.heartbeat({"step": 1})
        time.sleep(3)  # goes silent: the heartbeat timeout ends this attempt
        return "first attempt should have timed out"
    return {"resumed_from": ctx.heartbeat_details, "attempt": ctx.info.attempt}


@sdk.workflow
async def heartbeat_retry(ctx: sdk.WorkflowContext, _: Any) -> Any:
    return await ctx.execute_activity(heartbeater, heartbeat_timeout=0.8,
                                      retry_policy=FAST_RETRY)


@sdk.activity
def slow(ctx: sdk.ActivityContext, seconds: float) -> str:
    time.sleep(seconds)
    return "done"


@sdk.workflow
async def start_to_close(ctx: sdk.WorkflowContext, _: Any) -> Any:
    try:
        await ctx.execute_activity(slow, 3, start_to_close_timeout=0.5,
                                   retry_policy=sdk.RetryPolicy(maximum_attempts=1))
    except sdk.ActivityError as err:
        return {"type": err.type, "timeout_type": err.timeout_type}
    return "unexpected success"


@sdk.activity
async def double(ctx: sdk.ActivityContext, n: int) -> int:
    return n * 2


@sdk.workflow
async def fan_out(ctx: sdk.WorkflowContext, n: int) -> int:
    results = await asyncio.gather(*(ctx.start_activity(double, i) for i in range(n)))
    return sum(results)


@sdk.workflow
async def signal_wait(ctx: sdk.WorkflowContext, opts: dict[str, Any]) -> Any:
    if opts.get("sleep"):
        await ctx.sleep(opts["sleep"])
    try:
        sig = await ctx.wait_for_signal(opts.get("name"), timeout=opts.get("timeout"))
    except TimeoutError:
        return {"timed_out": True}
    return {"name": sig.name, "input": sig.input}


@sdk.workflow
async def sleeper(ctx: sdk.WorkflowContext, seconds: float) -> Any:
    start = ctx.now()
    await ctx.sleep(seconds)
    return {"started": start.isoformat(), "woke": ctx.now().isoformat()}


@sdk.activity
def where(ctx: sdk.ActivityContext, _: Any) -> str:
    return os.environ.get("E2E_WORKER_NAME", "?")


@sdk.workflow
async def routed(ctx: sdk.WorkflowContext, queue: str) -> Any:
    here = await ctx.execute_activity(where)
    there = await ctx.execute_activity(where, task_queue=queue)
    return {"workflow_queue_ran_on": here, "other_queue_ran_on": there}


@sdk.activity
def step(ctx: sdk.ActivityContext, name: str) -> str:
    return name


@sdk.workflow
async def versioned(ctx: sdk.WorkflowContext, _: Any) -> Any:
    if os.environ.get("E2E_VARIANT", "a") == "a":
        first = await ctx.execute_activity(step, "a")
    else:  # a redeploy that changed which activity runs first: not replayable
        first = await ctx.execute_activity(where)
    sig = await ctx.wait_for_signal("go")
    return {"first": first, "signal": sig.input}


@sdk.workflow
async def many_steps(ctx: sdk.WorkflowContext, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.execute_activity(double, i)
    return total


@sdk.workflow(failure_exception_types=[ValueError])  # else it fails the task, not the run
async def boom(ctx: sdk.WorkflowContext, _: Any) -> Any:
    raise ValueError("workflow code raised")


@sdk.activity
def add(ctx: sdk.ActivityContext, pair: list[int]) -> int:
    return pair[0] + pair[1]


@sdk.activity
async def times(ctx: sdk.ActivityContext, pair: list[int]) -> int:
    return pair[0] * pair[1]


@sdk.workflow
async def local_steps(ctx: sdk.WorkflowContext, n: int) -> dict[str, Any]:
    """Three local activities: one workflow task, three markers."""
    a = await ctx.execute_local_activity(add, [n, 1], start_to_close_timeout=5)
    b = await ctx.execute_local_activity(times, [a, 10], start_to_close_timeout=5)
    c = await ctx.execute_local_activity(add, [b, 2], start_to_close_timeout=5)
    return {"a": a, "b": b, "c": c}


@sdk.workflow
async def local_retries(ctx: sdk.WorkflowContext, fail_times: int) -> Any:
    return await ctx.execute_local_activity(flaky, fail_times, start_to_close_timeout=5,
                                            retry_policy=FAST_RETRY)


@sdk.workflow
async def local_then_signal(ctx: sdk.WorkflowContext, _: Any) -> Any:
    """A local activity, a wait (another worker may take over), another local activity."""
    first = await ctx.execute_local_activity(where, None, start_to_close_timeout=5)
    await ctx.wait_for_signal("go")
    second = await ctx.execute_local_activity(where, None, start_to_close_timeout=5)
    return {"first": first, "second": second}


@sdk.workflow
async def local_refused(ctx: sdk.WorkflowContext, _: Any) -> Any:
    try:
        await ctx.execute_local_activity(refuse, None, start_to_close_timeout=5)
    except sdk.ActivityError as err:
        return {"type": err.type, "message": err.message, "attempt": err.attempt}
    return None



@sdk.workflow
async def eager_steps(ctx: sdk.WorkflowContext, n: int) -> list[str]:
    """``n`` activities in turn, noting the workflow's time after each: the tasks after the
    activities run eagerly on their results (``sdk._worker``)."""
    times = [ctx.now().isoformat()]
    for i in range(n):
        await ctx.execute_activity(add, [i, 1], start_to_close_timeout=10)
        times.append(ctx.now().isoformat())
    return times


@sdk.workflow
async def eager_signal(ctx: sdk.WorkflowContext, _: Any) -> dict[str, Any]:
    """A signal that arrives while an activity runs: its task runs between the activity's
    start and its result, and the workflow sees it."""
    got: list[Any] = []
    ctx.set_signal_handler("note", got.append)
    first = await ctx.execute_activity(slow, 1.0, start_to_close_timeout=10)
    second = await ctx.execute_activity(add, [1, 2], start_to_close_timeout=10)
    return {"got": got, "first": first, "second": second}
