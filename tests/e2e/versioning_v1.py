"""The first deploy of ``greeter`` (tests/e2e/test_versioning.py); ``versioning_v2`` patches it."""

from __future__ import annotations

from typing import Any

import sdk


@sdk.activity
def greet(ctx: sdk.ActivityContext, who: str) -> str:
    return f"hello {who}"


@sdk.workflow
async def greeter(ctx: sdk.WorkflowContext, who: str) -> dict[str, Any]:
    sig = await ctx.wait_for_signal("go")
    greeting = await ctx.execute_activity(greet, who, start_to_close_timeout=30)
    return {"branch": "v1", "greeting": greeting, "by": sig.input}
