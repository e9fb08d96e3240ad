"""Workflows whose code goes wrong, for tests/e2e/test_workflow_code.py (``v2`` is the fix).

``invoice`` has a bug (a ``KeyError`` after its activity): its workflow task fails and is
retried until ``workflow_code_v2`` is deployed. ``blocking`` sleeps without yielding (a
deadlock, as the worker sees it); ``quick`` is an unrelated workflow with a durable
``asyncio.sleep``; ``refuses`` fails its run on purpose.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sdk


@sdk.activity
def quote(ctx: sdk.ActivityContext, order: dict[str, Any]) -> dict[str, Any]:
    return {"total": order["qty"] * 3}


@sdk.workflow
async def invoice(ctx: sdk.WorkflowContext, order: dict[str, Any]) -> dict[str, Any]:
    price = await ctx.execute_activity(quote, order, start_to_close_timeout=30)
    return {"total": price["total"], "tax": price["tax"]}  # the bug: no "tax"


@sdk.workflow
async def blocking(ctx: sdk.WorkflowContext, seconds: float) -> str:
    time.sleep(seconds)  # noqa: ASYNC251 (on purpose: it blocks its thread, a deadlock)
    return "woke up"


@sdk.workflow
async def quick(ctx: sdk.WorkflowContext, value: Any) -> Any:
    await asyncio.sleep(0.3)  # a durable timer
    return value


@sdk.workflow
async def refuses(ctx: sdk.WorkflowContext, _: Any) -> None:
    raise sdk.ApplicationError("not today", type="Refused")
