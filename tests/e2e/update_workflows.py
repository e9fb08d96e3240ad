"""Workflows the end-to-end tests of updates run (task queue ``updates``)."""

from __future__ import annotations

from typing import Any

import sdk


@sdk.activity
def price(ctx: sdk.ActivityContext, items: list[str]) -> int:
    return 3 * len(items)


@sdk.workflow
async def update_cart(ctx: sdk.WorkflowContext, owner: str) -> dict[str, Any]:
    cart: dict[str, Any] = {"owner": owner, "items": [], "paid": None}

    def add(item: str) -> int:
        cart["items"].append(item)
        return len(cart["items"])

    def check_item(item: str) -> None:
        if not isinstance(item, str) or not item:
            raise ValueError("an item needs a name")
        if item in cart["items"]:
            raise sdk.ApplicationError(f"{item!r} is in the cart already")

    async def checkout(coupon: str | None = None) -> str:
        if not cart["items"]:
            raise sdk.ApplicationError("the cart is empty", type="EmptyCart",
                                       details={"owner": owner})
        total = await ctx.execute_activity(price, cart["items"], start_to_close_timeout=30)
        await ctx.sleep(0.2)
        cart["paid"] = total
        return f"{owner} paid {total}" + (f" with {coupon}" if coupon else "")

    ctx.set_update_handler("add", add, validator=check_item)
    ctx.set_update_handler("checkout", checkout)
    ctx.set_query_handler("items", lambda: list(cart["items"]))
    await ctx.wait_condition(lambda: cart["paid"] is not None)
    return cart
