"""``workflow_code_v1`` with ``invoice`` fixed: deploying it resumes the runs it left stuck."""

from __future__ import annotations

from typing import Any

import sdk
from tests.e2e.workflow_code_v1 import blocking, quick, quote, refuses

__all__ = ["blocking", "invoice", "quick", "quote", "refuses"]


@sdk.workflow
async def invoice(ctx: sdk.WorkflowContext, order: dict[str, Any]) -> dict[str, Any]:
    price = await ctx.execute_activity(quote, order, start_to_close_timeout=30)
    return {"total": price["total"], "tax": price.get("tax", 0)}
