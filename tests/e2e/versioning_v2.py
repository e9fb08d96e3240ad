"""``greeter`` patched: new runs greet warmly, runs ``versioning_v1`` started keep its branch."""

from __future__ import annotations

from typing import Any

import sdk
from tests.e2e.versioning_v1 import greet

__all__ = ["greet", "greet_warmly", "greeter"]


@sdk.activity
def greet_warmly(ctx: sdk.ActivityContext, who: str) -> str:
    return f"hello {who}, welcome back"


@sdk.workflow
async def greeter(ctx: sdk.WorkflowContext, who: str) -> dict[str, Any]:
    warm = ctx.patched("warm-greeting")  # before the wait: old runs replay it as False
    sig = await ctx.wait_for_signal("go")
    if warm:
        greeting = await ctx.execute_activity(greet_warmly, who, start_to_close_timeout=30)
    else:
        greeting = await ctx.execute_activity(greet, who, start_to_close_timeout=30)
    return {"branch": "v2" if warm else "v1", "greeting": greeting, "by": sig.input}
