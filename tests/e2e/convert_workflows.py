"""Workflows and activities of the data conversion end-to-end tests (tests/e2e/test_convert.py).

``XorCodec`` is the codec the codec worker runs with (``--payload-codec
tests.e2e.convert_workflows:XorCodec``) and the test's client uses; ``SECRET`` is the text
every payload below carries, which the database must never hold in the clear.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import sdk

SECRET = "plaintext-d7c1"


class XorCodec:
    """zlib, then XOR with a key: a toy stand-in for encryption (``sdk.PayloadCodec``)."""

    key = b"sched-e2e-key"

    def _xor(self, data: bytes) -> bytes:
        return bytes(b ^ self.key[i % len(self.key)] for i, b in enumerate(data))

    def encode(self, data: bytes) -> bytes:
        return self._xor(zlib.compress(data))

    def decode(self, data: bytes) -> bytes:
        return zlib.decompress(self._xor(data))


@dataclass
class Line:
    sku: str
    quantity: int


@dataclass
class Order:
    id: int
    note: str
    lines: list[Line] = field(default_factory=list)


@dataclass
class Quote:
    order_id: int
    total: float
    note: str
    lines: list[Line]


@sdk.activity
def price_order(ctx: sdk.ActivityContext, input: Order) -> Quote:
    assert isinstance(input, Order) and all(isinstance(x, Line) for x in input.lines)
    total = sum(line.quantity * 2.5 for line in input.lines)
    return Quote(input.id, total, input.note, input.lines)


@sdk.activity
def remember_progress(ctx: sdk.ActivityContext, input: str) -> str:
    """Heartbeats ``input``, fails its first attempt, and returns the heartbeat it finds on
    the second: heartbeat details travel encoded and come back decoded."""
    if ctx.info.attempt == 1:
        ctx.heartbeat({"progress": input})
        raise RuntimeError("first attempt fails after its heartbeat")
    details = ctx.heartbeat_details
    assert isinstance(details, dict)
    return str(details["progress"])


@sdk.activity
def refuse(ctx: sdk.ActivityContext, input: str) -> None:
    try:
        raise ValueError("bad input")  # a message is not encoded: no payload in it
    except ValueError as err:
        raise sdk.ApplicationError("the charge was refused", type="ChargeRefused",
                                   non_retryable=True, details={"why": input}) from err


@sdk.activity
def shout(ctx: sdk.ActivityContext, input: str) -> str:
    return input.upper()


@sdk.workflow
async def quote_order(ctx: sdk.WorkflowContext, input: Order) -> Quote:
    assert isinstance(input, Order)
    quote: Quote = await ctx.execute_activity(price_order, input, start_to_close_timeout=20)
    assert isinstance(quote, Quote) and isinstance(quote.lines[0], Line)
    return quote


@sdk.workflow
async def every_payload(ctx: sdk.WorkflowContext, input: str) -> dict[str, str]:
    """One of each payload the codec must encode: input, activity input and result, heartbeat
    details, a local activity's result, a side effect, a signal, a failure's details."""
    progress = await ctx.execute_activity(
        remember_progress, input, start_to_close_timeout=20,
        retry_policy=sdk.RetryPolicy(initial_interval=0.1, maximum_attempts=3))
    local = await ctx.execute_local_activity(shout, input, start_to_close_timeout=10)
    effect = await ctx.side_effect(lambda: f"effect {input}")
    signal = await ctx.wait_for_signal("go")
    try:
        await ctx.execute_activity(refuse, input, start_to_close_timeout=20)
    except sdk.ActivityError as err:
        cause = err.cause
        assert isinstance(cause, sdk.ApplicationError)
        refused = f"{cause.type} {cause.details['why']}"
    return {"progress": progress, "local": local, "effect": effect, "signal": signal.input,
            "refused": refused}


@sdk.workflow
async def refused_charge(ctx: sdk.WorkflowContext, input: str) -> None:
    """Fails with the activity's error: the client sees the whole chain."""
    await ctx.execute_activity(refuse, input, start_to_close_timeout=20)


@sdk.activity
def beat_and_park(ctx: sdk.ActivityContext, input: str) -> None:
    """Heartbeats ``input``, then hands its completion to the test (``CompleteAsync``)."""
    ctx.heartbeat({"progress": input})
    raise sdk.CompleteAsync()


@sdk.workflow
async def parked(ctx: sdk.WorkflowContext, input: str) -> Quote:
    quote: Quote = await ctx.execute_activity(beat_and_park, input, start_to_close_timeout=60,
                                              result_type=Quote)
    return quote
