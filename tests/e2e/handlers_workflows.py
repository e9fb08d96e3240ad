"""Workflows with signal handlers and ``wait_condition``, for tests/e2e/test_signal_handlers.py."""

from __future__ import annotations

from typing import Any

import sdk


@sdk.activity
def shout(ctx: sdk.ActivityContext, text: str) -> str:
    return text.upper()


@sdk.workflow
async def collector(ctx: sdk.WorkflowContext, expected: int) -> dict[str, Any]:
    """Sets its handlers only once "start" comes: the signals sent before wait for them."""
    items: list[Any] = []
    shouted: list[str] = []

    async def on_other(name: str, value: Any) -> None:
        shouted.append(await ctx.execute_activity(shout, f"{name} {value}",
                                                  start_to_close_timeout=30))

    start = await ctx.wait_for_signal("start")
    ctx.set_signal_handler("add", items.append)
    ctx.set_signal_handler(None, on_other)
    await ctx.wait_condition(lambda: len(items) >= expected and len(shouted) >= 1)
    return {"start": start.input, "items": items, "shouted": shouted}


@sdk.workflow
async def deadline(ctx: sdk.WorkflowContext, seconds: float) -> str:
    state = {"done": False}
    ctx.set_signal_handler("done", lambda _: state.update(done=True))
    try:
        await ctx.wait_condition(lambda: state["done"], timeout=seconds)
    except TimeoutError:
        return "timed out"
    return "done"
