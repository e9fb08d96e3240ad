"""Workflows the end-to-end tests of queries and of the client's listing run (task queue
``queries``)."""

from __future__ import annotations

import asyncio
from typing import Any

import sdk


@sdk.activity
def noop(ctx: sdk.ActivityContext, value: Any) -> Any:
    return value


@sdk.workflow
async def query_counter(ctx: sdk.WorkflowContext, start: int) -> dict[str, Any]:
    state: dict[str, Any] = {"count": start, "signals": 0}
    ctx.set_query_handler("count", lambda: state["count"])
    ctx.set_query_handler("state", lambda: dict(state))
    ctx.set_query_handler("plus", lambda n: state["count"] + n)
    missing: dict[str, int] = {}
    ctx.set_query_handler("boom", lambda: missing["key"])
    ctx.set_query_handler("sneaky", lambda: ctx.start_activity(noop, 1))
    while True:
        signal = await ctx.wait_for_signal()
        if signal.name == "stop":
            return state
        state["count"] += int(signal.input)
        state["signals"] += 1


@sdk.workflow
async def query_sleeper(ctx: sdk.WorkflowContext, seconds: float) -> str:
    ctx.set_query_handler("phase", lambda: "sleeping")
    await asyncio.sleep(seconds)
    return "woke"
