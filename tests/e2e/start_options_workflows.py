"""Workflows of tests/e2e/test_start_options.py (task queue ``start-options``)."""

from __future__ import annotations

from typing import Any

import sdk


@sdk.workflow(name="sws_greet")
async def sws_greet(ctx: sdk.WorkflowContext, name: str) -> str:
    """Needs its "greeting" signal: started by a signal-with-start, it has it at once."""
    signal = await ctx.wait_for_signal("greeting")
    return f"{signal.input}, {name}"


@sdk.workflow(name="sws_collect")
async def sws_collect(ctx: sdk.WorkflowContext, _: Any) -> list[Any]:
    """Collects "add" signals until "done"."""
    items: list[Any] = []
    while True:
        signal = await ctx.wait_for_signal()
        if signal.name == "done":
            return items
        items.append(signal.input)
