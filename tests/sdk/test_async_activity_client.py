"""``client.get_async_activity_handle(token)``: the requests it sends and the errors it
raises (the engine is ``httpx.MockTransport``; tests/e2e/test_async_activities.py runs it for
real)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import sdk
from sdk._converter import PayloadConverter
from tests.sdk.test_client_unit import Recorder, error, ok
from tests.sdk.test_converter import XorCodec


def test_complete_fail_and_heartbeat_post_to_the_token_s_endpoints() -> None:
    rec = Recorder(httpx.Response(204), httpx.Response(204), ok({"cancel_requested": True}))
    with sdk.Client("http://engine", token="t", transport=httpx.MockTransport(rec)) as c:
        handle = c.get_async_activity_handle("12.ab/c")
        handle.complete({"ok": 1})
        declined = sdk.ApplicationError("no", type="Declined", non_retryable=True)
        declined.__cause__ = KeyError("card")
        handle.fail(declined)
        assert handle.heartbeat([1]) is True
    paths = [r.url.raw_path.decode() for r in rec.requests]
    assert paths == ["/api/activities/12.ab%2Fc/complete", "/api/activities/12.ab%2Fc/fail",
                     "/api/activities/12.ab%2Fc/heartbeat"]
    assert rec.body(0) == {"result": {"ok": 1}}
    failure = rec.body(1)["failure"]
    assert (failure["type"], failure["message"], failure["non_retryable"]) == (
        "Declined", "no", True)
    assert failure["cause"]["type"] == "KeyError"
    assert rec.body(2) == {"details": [1]}


@pytest.mark.parametrize(("status", "code"), [(404, "activity_not_found"), (409, "stale_task")])
def test_unknown_and_stale_tokens_raise_with_their_codes(status: int, code: str) -> None:
    rec = Recorder(error(status, code))
    with sdk.Client("http://engine", token="t", transport=httpx.MockTransport(rec),
                    retries=3) as c, pytest.raises(sdk.SchedAPIError) as caught:
        c.get_async_activity_handle("1.x").complete(None)
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert len(rec.requests) == 1  # a completion is sent once


def test_with_a_codec_everything_sent_is_encoded() -> None:
    conv = PayloadConverter(XorCodec())

    async def main() -> Recorder:
        rec = Recorder(httpx.Response(204), httpx.Response(204), ok({"cancel_requested": False}))
        async with sdk.AsyncClient("http://engine", token="t", payload_codec=XorCodec(),
                                   transport=httpx.MockTransport(rec)) as c:
            handle = c.get_async_activity_handle("1.x")
            await handle.complete("secret")
            await handle.fail(sdk.ApplicationError("no", details="hidden"))
            assert await handle.heartbeat("progress") is False
        return rec

    rec = asyncio.run(main())
    assert conv.decode_sync(rec.body(0)["result"]) == "secret"
    assert conv.decode_sync(rec.body(1)["failure"]["details"]) == "hidden"
    assert conv.decode_sync(rec.body(2)["details"]) == "progress"
    assert "secret" not in rec.requests[0].content.decode()
