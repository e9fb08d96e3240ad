"""``start_workflow``/``execute_workflow`` with ``id_conflict_policy`` and signal-with-start:
what ``sdk.Client`` and ``sdk.AsyncClient`` send, and how they read the answer (``started``).
The engine is ``httpx.MockTransport`` (tests/sdk/test_client_unit)."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest

import sdk
from sdk._converter import PayloadConverter
from sdk.protocol.payloads import is_encoded_payload
from tests.sdk.test_client_unit import Recorder, client, error, ok, request_id
from tests.sdk.test_converter import XorCodec

RUN = {"workflow_id": "cart-1", "run_id": "r1", "status": "running"}


def test_use_existing_is_sent_and_the_handle_says_it_found_the_run() -> None:
    rec = Recorder(ok({**RUN, "started": False}, 200))
    handle = client(rec).start_workflow("cart", None, workflow_id="cart-1",
                                        id_conflict_policy="use_existing")
    body = rec.body(0)
    request_id(body)
    assert body == {"workflow_type": "cart", "input": None, "task_queue": "default",
                    "workflow_id": "cart-1", "id_conflict_policy": "use_existing"}
    assert (handle.workflow_id, handle.run_id, handle.started) == ("cart-1", "r1", False)


def test_a_start_that_started_says_so_and_an_old_engine_s_answer_counts_as_started() -> None:
    rec = Recorder(ok({**RUN, "started": True}, 201), ok(RUN, 201))
    c = client(rec)
    assert c.start_workflow("cart", workflow_id="cart-1").started is True
    assert c.start_workflow("cart", workflow_id="cart-1").started is True
    assert "id_conflict_policy" not in rec.body(0) and "start_signal" not in rec.body(0)
    assert c.get_workflow_handle("cart-1").started is None


def test_signal_with_start_sends_the_signal_and_its_input() -> None:
    rec = Recorder(ok({**RUN, "started": True}, 201))
    handle = client(rec).start_workflow("cart", {"owner": "ada"}, workflow_id="cart-1",
                                        start_signal="add", start_signal_input="tea")
    body = rec.body(0)
    request_id(body)
    assert body == {"workflow_type": "cart", "input": {"owner": "ada"},
                    "task_queue": "default", "workflow_id": "cart-1", "start_signal": "add",
                    "start_signal_input": "tea"}
    assert handle.started is True


def test_a_mismatch_is_a_sched_api_error_with_its_code() -> None:
    rec = Recorder(error(409, "task_queue_mismatch", "other queue", run_id="r1",
                         task_queue="eu"))
    with pytest.raises(sdk.SchedAPIError) as raised:
        client(rec).start_workflow("cart", workflow_id="cart-1",
                                   id_conflict_policy="use_existing")
    assert raised.value.status_code == 409 and raised.value.code == "task_queue_mismatch"
    assert not isinstance(raised.value, sdk.WorkflowAlreadyStartedError)


@pytest.mark.parametrize("options", [
    {"id_conflict_policy": "terminate_existing"},
    {"start_signal_input": 1},
    {"start_signal": "add", "id_conflict_policy": "fail"},
])
def test_bad_options_are_refused_before_anything_is_sent(options: dict[str, object]) -> None:
    rec = Recorder()
    with pytest.raises(ValueError):
        client(rec).start_workflow("cart", workflow_id="cart-1", **options)  # type: ignore[arg-type]
    assert rec.requests == []


@dataclasses.dataclass
class Item:
    name: str


def test_the_signal_input_goes_through_the_codec() -> None:
    rec = Recorder(ok({**RUN, "started": True}, 201))
    codec = XorCodec()
    with sdk.Client("http://engine", token="t", payload_codec=codec,
                    transport=httpx.MockTransport(rec)) as c:
        c.start_workflow("cart", None, start_signal="add", start_signal_input=Item("tea"))
    sent = rec.body(0)["start_signal_input"]
    assert is_encoded_payload(sent)
    assert PayloadConverter(codec).decode_sync(sent) == {"name": "tea"}


def test_execute_workflow_starts_then_waits_for_the_result() -> None:
    rec = Recorder(ok({**RUN, "started": False}, 200),
                   ok({**RUN, "status": "completed", "result": ["tea"]}))
    result = client(rec).execute_workflow("cart", workflow_id="cart-1", start_signal="add",
                                          start_signal_input="tea", timeout=5)
    assert result == ["tea"]
    assert rec.body(0)["start_signal"] == "add"
    assert rec.requests[1].url.path == "/api/workflows/cart-1/result"
    assert rec.requests[1].url.params["run_id"] == "r1"


def test_the_async_client_takes_the_same_options() -> None:
    rec = Recorder(ok({**RUN, "started": False}, 200), ok({**RUN, "started": True}, 201),
                   ok({**RUN, "status": "completed", "result": 3}))

    async def scenario() -> None:
        async with sdk.AsyncClient("http://engine", token="t",
                                   transport=httpx.MockTransport(rec)) as c:
            handle = await c.start_workflow("cart", workflow_id="cart-1",
                                            id_conflict_policy="use_existing")
            assert handle.started is False and handle.run_id == "r1"
            assert await c.execute_workflow("cart", workflow_id="cart-1", start_signal="add",
                                            start_signal_input=1) == 3
            with pytest.raises(ValueError):
                await c.start_workflow("cart", start_signal_input=1)

    asyncio.run(scenario())
    assert rec.body(0)["id_conflict_policy"] == "use_existing"
    second = rec.body(1)
    assert (second["start_signal"], second["start_signal_input"]) == ("add", 1)
