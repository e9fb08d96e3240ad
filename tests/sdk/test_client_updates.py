"""Unit tests of the client's updates: what is sent, how the answers are read (the engine
replaced by ``httpx.MockTransport``, as in test_client_unit)."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest

import sdk

from .test_client_unit import Recorder, client, error, ok


@dataclasses.dataclass
class Total:
    count: int


def test_an_update_posts_its_args_and_an_update_id_and_returns_the_result() -> None:
    rec = Recorder(ok({"result": 3}), ok({"result": {"count": 4}}))
    handle = client(rec).get_workflow_handle("cart/7")
    assert handle.execute_update("add", "tea", {"n": 1}) == 3
    req = rec.requests[0]
    assert req.method == "POST"
    assert req.url.raw_path.decode() == "/api/workflows/cart%2F7/updates/add"
    body = rec.body(0)
    drawn = body.pop("update_id")
    assert isinstance(drawn, str) and len(drawn) == 32
    assert body == {"args": ["tea", {"n": 1}]}
    pinned = client(rec).get_workflow_handle("w", run_id="r9")
    assert pinned.execute_update("add", Total(1), update_id="mine",
                                 result_type=Total) == Total(4)
    assert rec.body(1) == {"args": [{"count": 1}], "update_id": "mine", "run_id": "r9"}
    # It may wait for the workflow's handler: longer than the client's own timeout.
    assert rec.requests[1].extensions["timeout"]["read"] > 30


@pytest.mark.parametrize(("status", "code"), [
    (404, "update_not_found"), (422, "update_rejected"), (409, "run_closed"),
    (504, "no_worker"), (504, "update_timeout")])
def test_an_update_error_raises_with_its_code_and_is_sent_once(status: int, code: str) -> None:
    rec = Recorder(error(status, code, "why"))
    with pytest.raises(sdk.SchedAPIError) as info:
        client(rec).get_workflow_handle("w").execute_update("add", 1)
    assert (info.value.status_code, info.value.code, info.value.message) == (status, code, "why")
    assert not isinstance(info.value, sdk.WorkflowUpdateFailedError)
    assert len(rec.requests) == 1


def test_a_failed_update_raises_with_its_failure() -> None:
    failure = {"type": "EmptyCart", "message": "the cart is empty", "details": {"n": 0}}
    rec = Recorder(error(422, "update_failed", "the update failed", failure=failure,
                         update_id="u"))
    with pytest.raises(sdk.WorkflowUpdateFailedError) as info:
        client(rec).get_workflow_handle("w").execute_update("checkout")
    assert info.value.code == "update_failed" and info.value.failure == failure


def test_an_update_needs_a_name_and_a_usable_id() -> None:
    handle = client(Recorder()).get_workflow_handle("w")
    with pytest.raises(ValueError):
        handle.execute_update("")
    with pytest.raises(ValueError):
        handle.execute_update("add", update_id="")


def test_the_async_client_executes_updates_alike() -> None:
    rec = Recorder(ok({"result": "done"}), error(422, "update_rejected", "no"))

    async def scenario() -> None:
        async with sdk.AsyncClient("http://engine:8000", token="t",
                                   transport=httpx.MockTransport(rec)) as c:
            handle = c.get_workflow_handle("w")
            assert await handle.execute_update("close", update_id="x") == "done"
            with pytest.raises(sdk.SchedAPIError) as info:
                await handle.execute_update("close")
            assert info.value.code == "update_rejected"

    asyncio.run(scenario())
    assert rec.body(0) == {"args": [], "update_id": "x"}


def test_with_a_codec_an_update_s_result_and_failure_details_are_decoded() -> None:
    from sdk._converter import PayloadConverter
    from tests.sdk.test_converter import XorCodec

    conv = PayloadConverter(XorCodec())
    failure = conv.encode_failure_sync({"type": "EmptyCart", "message": "empty",
                                        "details": {"n": 0}})
    rec = Recorder(ok({"result": conv.encode_sync({"count": 2})}),
                   error(422, "update_failed", "failed", failure=failure))
    with sdk.Client("http://engine", token="t", payload_codec=XorCodec(),
                    transport=httpx.MockTransport(rec)) as c:
        handle = c.get_workflow_handle("w")
        assert handle.execute_update("add", result_type=Total) == Total(2)
        with pytest.raises(sdk.WorkflowUpdateFailedError) as info:
            handle.execute_update("checkout")
    assert info.value.failure is not None and info.value.failure["details"] == {"n": 0}


def test_update_with_start_starts_or_takes_the_run_then_updates_it() -> None:
    started = {"workflow_id": "cart-1", "run_id": "r1", "started": True}
    rec = Recorder(ok(started, 201), ok({"result": 1}),
                   ok({**started, "started": False}, 200), ok({"result": 1}))
    c = client(rec)
    assert c.execute_update_with_start("add", "tea", workflow_type="cart", input="ann",
                                       workflow_id="cart-1", task_queue="q") == 1
    assert rec.body(0) == {"workflow_type": "cart", "input": "ann", "workflow_id": "cart-1",
                           "task_queue": "q", "id_conflict_policy": "use_existing",
                           **{k: v for k, v in rec.body(0).items() if k == "request_id"}}
    assert rec.requests[1].url.raw_path.decode() == "/api/workflows/cart-1/updates/add"
    first = rec.body(1)
    assert first["args"] == ["tea"] and first["update_id"]
    # A retry of the whole call with the same update id: the open run, the first outcome.
    assert c.execute_update_with_start("add", "tea", workflow_type="cart", input="ann",
                                       workflow_id="cart-1", task_queue="q",
                                       update_id=first["update_id"]) == 1
    assert rec.body(3)["update_id"] == first["update_id"]
    with pytest.raises(ValueError, match="workflow_id"):
        c.execute_update_with_start("add", workflow_type="cart", workflow_id="")


def test_the_async_update_with_start_is_the_same_two_requests() -> None:
    rec = Recorder(ok({"workflow_id": "w", "run_id": "r", "started": True}, 201),
                   ok({"result": "done"}))

    async def scenario() -> None:
        async with sdk.AsyncClient("http://engine:8000", token="t",
                                   transport=httpx.MockTransport(rec)) as c:
            assert await c.execute_update_with_start(
                "checkout", workflow_type="cart", workflow_id="w",
                id_conflict_policy="fail") == "done"

    asyncio.run(scenario())
    assert rec.body(0)["id_conflict_policy"] == "fail"
    assert rec.requests[1].url.raw_path.decode() == "/api/workflows/w/updates/checkout"
