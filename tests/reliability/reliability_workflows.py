"""Workflows and activities for the reliability tests: slow work to shut down on, and poison."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import sdk
from tests.e2e.harness import log_step

NO_RETRY = sdk.RetryPolicy(maximum_attempts=1)


@sdk.activity
def slow(ctx: sdk.ActivityContext, seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"attempt": ctx.info.attempt, "worker": os.environ.get("REL_WORKER_NAME", "?")}


@sdk.workflow
async def slow_then_quick(ctx: sdk.WorkflowContext, seconds: float) -> Any:
    first = await ctx.execute_activity(slow, seconds, start_to_close_timeout=120)
    second = await ctx.execute_activity(slow, 0)
    return {"first": first, "second": second}


@sdk.workflow
async def poison(ctx: sdk.WorkflowContext, _: Any) -> Any:
    """Started by a worker with ``REL_VARIANT=a``, then run by one with another variant
    (a redeploy that changed the code): every workflow task of the run fails from then on."""
    if os.environ.get("REL_VARIANT", "a") == "a":
        await ctx.execute_activity(ok, "a")
    else:
        await ctx.sleep(0.1)
    await ctx.wait_for_signal("go")


@sdk.activity
def raises(ctx: sdk.ActivityContext, _: Any) -> None:
    raise RuntimeError("activity code raised")


@sdk.activity
def hangs(ctx: sdk.ActivityContext, _: Any) -> None:
    threading.Event().wait(3600)


@sdk.activity
def exits_its_thread(ctx: sdk.ActivityContext, _: Any) -> None:
    raise SystemExit(3)


@sdk.activity
def interrupts(ctx: sdk.ActivityContext, _: Any) -> None:
    raise KeyboardInterrupt


@sdk.activity
def ok(ctx: sdk.ActivityContext, value: Any) -> Any:
    return value


@sdk.workflow
async def misbehaving_activity(ctx: sdk.WorkflowContext, name: str) -> Any:
    activity = {"raises": raises, "hangs": hangs, "exits_its_thread": exits_its_thread,
                "interrupts": interrupts}[name]
    try:
        await ctx.execute_activity(activity, start_to_close_timeout=1.0, retry_policy=NO_RETRY)
    except sdk.ActivityError as err:
        return {"type": err.type, "timeout_type": err.timeout_type}
    return "unexpected success"


@sdk.workflow
async def healthy(ctx: sdk.WorkflowContext, value: Any) -> Any:
    return await ctx.execute_activity(ok, value)


@sdk.activity
def step(ctx: sdk.ActivityContext, seconds: float) -> dict[str, Any]:
    """A step whose every run of its body is written to ``REL_STEP_LOG`` (one line: the run,
    the step, the attempt), so a test counts the bodies that ran more than once."""
    log_step("REL_STEP_LOG", ctx.info.workflow_id, ctx.info.activity_id, ctx.info.attempt)
    # A worker started with REL_STEP_STALL holds its steps that long (to be killed meanwhile).
    time.sleep(float(os.environ.get("REL_STEP_STALL") or seconds))
    return {"attempt": ctx.info.attempt, "worker": os.environ.get("REL_WORKER_NAME", "?")}


@sdk.workflow
async def steps(ctx: sdk.WorkflowContext, spec: dict[str, Any]) -> Any:
    """``spec["count"]`` steps of ``spec["seconds"]`` each, one after the other."""
    done = [await ctx.execute_activity(step, spec["seconds"], start_to_close_timeout=120)
            for _ in range(spec["count"])]
    return len(done)


@sdk.activity
async def blob(ctx: sdk.ActivityContext, size: int) -> str:
    return "x" * size


@sdk.workflow
async def long_history(ctx: sdk.WorkflowContext, spec: dict[str, Any]) -> Any:
    """Grow the history by ``rounds`` workflow tasks of ``per_round`` local activities of
    ``size`` characters each (one marker event apiece), then wait for ``go``."""
    for _ in range(spec["rounds"]):
        await asyncio.gather(*(ctx.execute_local_activity(blob, spec["size"],
                                                          start_to_close_timeout=30)
                               for _ in range(spec["per_round"])))
        await ctx.sleep(0.01)
    await ctx.wait_for_signal("go")
    info = ctx.info
    return {"replayed": ctx.is_replaying, "past_20000": info.history_length > 20_000,
            "past_10_mb": info.history_size_bytes > 10_000_000,
            "suggested": info.is_continue_as_new_suggested()}
