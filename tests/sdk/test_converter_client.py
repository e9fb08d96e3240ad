"""The clients' data conversion: what they send with a codec and a dataclass, and what they
rebuild from a result body. The engine is ``httpx.MockTransport`` (tests/sdk/test_client_unit)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest

import sdk
from sdk._converter import PayloadConverter
from sdk.protocol.payloads import is_encoded_payload
from tests.sdk.test_client_unit import Recorder, ok
from tests.sdk.test_converter import AsyncZlibCodec, XorCodec


@dataclasses.dataclass
class Greeting:
    name: str
    times: int


@sdk.workflow
async def greet(ctx: sdk.WorkflowContext, input: Greeting) -> Greeting:
    return input


def started() -> httpx.Response:
    return ok({"workflow_id": "w", "run_id": "r1"}, 201)


def test_start_and_signal_send_encoded_json_of_dataclasses() -> None:
    rec = Recorder(started(), ok({}, 202))
    codec = XorCodec()
    with sdk.Client("http://engine", token="t", payload_codec=codec,
                    transport=httpx.MockTransport(rec)) as c:
        handle = c.start_workflow(greet, Greeting("Ada", 2))
        handle.signal("poke", Greeting("Bob", 1))
    conv = PayloadConverter(codec)
    start, signal = rec.body(0), rec.body(1)
    assert is_encoded_payload(start["input"]) and is_encoded_payload(signal["input"])
    assert conv.decode_sync(start["input"]) == {"name": "Ada", "times": 2}
    assert conv.decode_sync(signal["input"]) == {"name": "Bob", "times": 1}


def test_result_is_decoded_and_rebuilt_from_the_workflow_s_annotation() -> None:
    conv = PayloadConverter(XorCodec())
    result = conv.encode_sync({"name": "Ada", "times": 2})
    rec = Recorder(started(), ok({"status": "completed", "result": result}),
                   ok({"status": "completed", "result": result}))
    with sdk.Client("http://engine", token="t", payload_codec=XorCodec(),
                    transport=httpx.MockTransport(rec)) as c:
        assert c.start_workflow(greet, None).result() == Greeting("Ada", 2)
        # By name: no annotation to go by, unless the caller names the type.
        assert c.get_workflow_handle("w").result() == {"name": "Ada", "times": 2}


def test_a_failure_s_details_are_decoded_along_the_chain() -> None:
    conv = PayloadConverter(XorCodec())
    failure = {"type": "ActivityError", "message": "activity 'pay' failed", "stack": "",
               "details": conv.encode_sync({"activity_type": "pay", "attempt": 2,
                                            "timeout_type": None}),
               "non_retryable": False,
               "cause": {"type": "Declined", "message": "no", "stack": "",
                         "details": conv.encode_sync({"card": "x"}), "non_retryable": True}}
    rec = Recorder(ok({"status": "failed", "failure": failure}))
    with sdk.Client("http://engine", token="t", payload_codec=XorCodec(),
                    transport=httpx.MockTransport(rec)) as c, \
            pytest.raises(sdk.WorkflowFailureError) as caught:
        c.get_workflow_handle("w").result()
    cause = caught.value.cause
    assert isinstance(cause, sdk.ActivityError)
    assert (cause.activity_type, cause.attempt) == ("pay", 2)
    assert isinstance(cause.cause, sdk.ApplicationError) and cause.cause.details == {"card": "x"}


def test_the_async_client_with_an_async_codec() -> None:
    codec = AsyncZlibCodec()
    conv = PayloadConverter(codec)
    encoded = asyncio.run(conv.encode({"name": "Cy", "times": 3}))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return started()
        return ok({"status": "completed", "result": encoded})

    async def main() -> tuple[Any, Any]:
        rec = Recorder(answer, answer)
        async with sdk.AsyncClient("http://engine", token="t", payload_codec=codec,
                                   transport=httpx.MockTransport(rec)) as c:
            handle = await c.start_workflow("greet", Greeting("Cy", 3), result_type=Greeting)
            return rec.body(0)["input"], await handle.result()

    sent, result = asyncio.run(main())
    assert asyncio.run(conv.decode(sent)) == {"name": "Cy", "times": 3}
    assert result == Greeting("Cy", 3)


def test_a_sync_client_runs_an_async_codec_on_a_loop_of_its_own() -> None:
    rec = Recorder(started())
    with sdk.Client("http://engine", token="t", payload_codec=AsyncZlibCodec(),
                    transport=httpx.MockTransport(rec)) as c:
        c.start_workflow("greet", [1, 2])
    assert PayloadConverter(AsyncZlibCodec()).decode_sync(rec.body(0)["input"]) == [1, 2]


def test_a_codec_without_encode_and_decode_is_refused() -> None:
    with pytest.raises(TypeError, match="encode"):
        sdk.Client("http://engine", token="t", payload_codec=object())  # type: ignore[arg-type]


def test_the_worker_command_line_loads_a_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdk.worker import load_codec

    codec = load_codec("tests.sdk.test_converter:XorCodec")
    assert isinstance(codec, XorCodec) and isinstance(codec, sdk.PayloadCodec)
    with pytest.raises(SystemExit, match="MODULE:NAME"):
        load_codec("tests.sdk.test_converter")
    with pytest.raises(SystemExit, match="no 'Nope'"):
        load_codec("tests.sdk.test_converter:Nope")
