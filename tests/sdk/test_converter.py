"""Data conversion and payload codecs (``sdk._converter``) and failure cause chains.

Pure tier: no engine, no worker process. The round trips are hypothesis properties; the
codec checks walk every payload field the protocol lists (``PAYLOAD_FIELDS``) and assert that
none is left readable.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import enum
import json
import uuid
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdk
from sdk._converter import (
    PayloadConverter,
    from_json,
    input_hint,
    map_command,
    map_event,
    return_hint,
    to_json,
)
from sdk._errors import exception_from_failure, failure_from_exception
from sdk.protocol import normalize_failure
from sdk.protocol.limits import MAX_FAILURE_CAUSE_DEPTH
from sdk.protocol.payloads import (
    CODEC_KEY,
    MARKER_PAYLOAD_FIELDS,
    PAYLOAD_FIELDS,
    is_encoded_payload,
)
from tests.sdk.test_runtime import EngineSim

# ---- values ---------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    price: float


@dataclasses.dataclass(frozen=True)
class Order:
    id: int
    lines: list[Line]
    color: Color
    placed_at: dt.datetime
    ref: uuid.UUID
    note: str | None = None
    tags: tuple[str, ...] = ()
    by_sku: dict[str, Line] = dataclasses.field(default_factory=dict)


def _json_round_trip(value: Any) -> Any:
    return json.loads(json.dumps(to_json(value)))


lines = st.builds(Line, sku=st.text(max_size=8), quantity=st.integers(-10**6, 10**6),
                  price=st.floats(allow_nan=False, allow_infinity=False))
orders = st.builds(
    Order, id=st.integers(), lines=st.lists(lines, max_size=3), color=st.sampled_from(Color),
    placed_at=st.datetimes(timezones=st.just(dt.UTC)), ref=st.uuids(),
    note=st.none() | st.text(max_size=10),
    tags=st.lists(st.text(max_size=4), max_size=3).map(tuple),
    by_sku=st.dictionaries(st.text(max_size=4), lines, max_size=2))


@settings(max_examples=150, deadline=None)
@given(orders)
def test_a_dataclass_survives_json_and_comes_back_as_itself(order: Order) -> None:
    assert from_json(_json_round_trip(order), Order) == order


@settings(max_examples=100, deadline=None)
@given(st.lists(orders, max_size=3))
def test_containers_of_dataclasses_come_back_from_their_hints(items: list[Order]) -> None:
    assert from_json(_json_round_trip(items), list[Order]) == items
    assert from_json(_json_round_trip(items[:1] or None), list[Order] | None) == (items[:1] or None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=20)


@given(json_values)
def test_plain_json_passes_through_both_ways_unchanged(value: Any) -> None:
    assert to_json(value) == value
    assert from_json(value, Any) == value


def test_a_value_that_does_not_fit_its_hint_is_a_conversion_error() -> None:
    with pytest.raises(sdk.PayloadConversionError, match="Line"):
        from_json({"sku": "a"}, Line)  # quantity and price are missing
    with pytest.raises(sdk.PayloadConversionError, match="Color"):
        from_json("green", Color)
    with pytest.raises(sdk.PayloadConversionError) as caught:
        from_json(3, Line)
    assert caught.value.non_retryable and caught.value.type == "PayloadConversionError"


def test_plain_hints_that_do_not_match_pass_the_value_on_as_before() -> None:
    # Loosely annotated code keeps working: nothing is rebuilt, nothing is refused.
    assert from_json("nope", list[int]) == "nope"
    assert from_json({"a": 1}, list[str]) == {"a": 1}
    assert from_json(None, Line) is None and from_json(None, dict[str, Any]) is None
    assert from_json("soon", dt.datetime) == "soon"
    assert from_json({"k": "v"}, dict[int, str]) == {"k": "v"}


def test_a_union_takes_the_first_member_the_value_fits() -> None:
    line = {"sku": "a", "quantity": 1, "price": 2.0}
    assert from_json(line, list[Line] | Line) == Line("a", 1, 2.0)
    assert from_json([line], list[Line] | Line) == [Line("a", 1, 2.0)]
    assert from_json("2026-01-02", int | dt.date) == dt.date(2026, 1, 2)
    assert from_json("x", int | dt.date) == "x"  # none fits: passed on


def test_unknown_keys_are_ignored_and_numbers_widen() -> None:
    assert from_json({"sku": "a", "quantity": 1, "price": 2, "extra": True}, Line) == Line(
        "a", 1, 2.0)
    assert from_json({"1": "x"}, dict[int, str]) == {1: "x"}


def test_hints_come_from_the_input_parameter_and_the_return_annotation() -> None:
    async def wf(ctx: Any, input: Order) -> list[Line]:
        raise NotImplementedError

    def bare(ctx, input):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    assert input_hint(wf) is Order
    assert return_hint(wf) == list[Line]
    assert input_hint(bare) is Any and return_hint(bare) is Any


class FakeModel:
    """What the converter needs of a pydantic v2 model (``model_dump``, ``model_validate``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def model_dump(self, *, mode: str) -> dict[str, Any]:
        assert mode == "json"
        return {"name": self.name}

    @classmethod
    def model_validate(cls, value: Any) -> FakeModel:
        return cls(value["name"])


def test_models_with_pydantic_s_methods_convert_both_ways() -> None:
    assert to_json([FakeModel("a")]) == [{"name": "a"}]
    assert from_json({"name": "b"}, FakeModel).name == "b"


def test_real_pydantic_models_convert_when_pydantic_is_installed() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        name: str
        when: dt.date

    item = Item(name="x", when=dt.date(2026, 1, 2))
    assert to_json(item) == {"name": "x", "when": "2026-01-02"}
    assert from_json(_json_round_trip(item), Item) == item


# ---- codecs ---------------------------------------------------------------------------


class XorCodec:
    """A toy codec: XOR with a key (what matters here is that the output is unreadable)."""

    def __init__(self, key: bytes = b"k3y") -> None:
        self.key = key

    def _xor(self, data: bytes) -> bytes:
        return bytes(b ^ self.key[i % len(self.key)] for i, b in enumerate(data))

    def encode(self, data: bytes) -> bytes:
        return self._xor(data)

    def decode(self, data: bytes) -> bytes:
        return self._xor(data)


class AsyncZlibCodec:
    async def encode(self, data: bytes) -> bytes:
        await asyncio.sleep(0)
        return zlib.compress(data)

    async def decode(self, data: bytes) -> bytes:
        await asyncio.sleep(0)
        return zlib.decompress(data)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_a_codec_round_trips_any_payload_sync_and_async(value: Any) -> None:
    for codec in (XorCodec(), AsyncZlibCodec()):
        conv = PayloadConverter(codec)
        encoded = conv.encode_sync(value)
        assert is_encoded_payload(encoded)
        assert json.loads(json.dumps(encoded)) == encoded
        assert conv.decode_sync(encoded) == value
        assert asyncio.run(conv.decode(asyncio.run(conv.encode(value)))) == value


def test_the_encoded_shape_is_base64_of_the_codec_output() -> None:
    encoded = PayloadConverter(XorCodec()).encode_sync({"amount": 25})
    assert set(encoded) == {CODEC_KEY}
    raw = base64.b64decode(encoded[CODEC_KEY])
    assert XorCodec().decode(raw) == b'{"amount":25}'


def test_plain_payloads_decode_to_themselves_so_old_histories_still_read() -> None:
    conv = PayloadConverter(XorCodec())
    for value in (None, 1, "x", {"a": 1}, {CODEC_KEY: 1}, {CODEC_KEY: "x", "other": 1}):
        assert conv.decode_sync(value) == value


def test_a_broken_encoded_payload_is_a_conversion_error() -> None:
    with pytest.raises(sdk.PayloadConversionError, match="base64"):
        PayloadConverter(XorCodec()).decode_sync({CODEC_KEY: "***"})
    with pytest.raises(sdk.PayloadConversionError, match="JSON"):
        PayloadConverter(XorCodec()).decode_sync({CODEC_KEY: "AAAA"})


def _failure(details: Any, cause: Any = None) -> dict[str, Any]:
    failure = {"type": "E", "message": "m", "stack": "", "details": details,
               "non_retryable": False}
    if cause is not None:
        failure["cause"] = cause
    return failure


SECRET = "s3cret"
_CHAIN = _failure({"outer": SECRET}, _failure({"inner": SECRET}))

COMMANDS: list[dict[str, Any]] = [
    {"kind": "schedule_activity", "seq": 1, "activity_type": "a", "input": {"x": SECRET}},
    {"kind": "complete_workflow", "result": [SECRET]},
    {"kind": "fail_workflow", "failure": _CHAIN},
    {"kind": "cancel_workflow", "details": SECRET},
    {"kind": "record_marker", "seq": 2, "marker_name": "side_effect", "data": SECRET},
    {"kind": "record_marker", "seq": 3, "marker_name": "local_activity",
     "data": {"activity_type": "la", "attempts": 1, "result": SECRET}},
    {"kind": "record_marker", "seq": 4, "marker_name": "local_activity",
     "data": {"activity_type": "la", "attempts": 2, "failure": _CHAIN}},
    {"kind": "start_timer", "seq": 5, "duration_ms": 10},
]


def _events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i, (event_type, fields) in enumerate(
            [(name, f) for name, f in PAYLOAD_FIELDS.items() if name[0].isupper()]
            + [("MarkerRecorded", ()), ("MarkerRecorded", ())], start=1):
        attributes: dict[str, Any] = {"seq": i}
        for name in fields:
            attributes[name] = _CHAIN if name == "failure" else {"v": SECRET}
        events.append({"event_id": i, "event_type": event_type, "attributes": attributes})
    events[-2]["attributes"].update(marker_name="side_effect", data=[SECRET])
    events[-1]["attributes"].update(marker_name="local_activity",
                                    data={"activity_type": "la", "result": SECRET})
    return events


def test_every_payload_of_every_command_and_event_is_encoded_and_decodes_back() -> None:
    conv = PayloadConverter(XorCodec())
    encoded = asyncio.run(conv.encode_commands(COMMANDS))
    assert SECRET not in json.dumps(encoded)
    assert encoded[-1] == COMMANDS[-1]  # no payloads: untouched
    assert encoded[2]["failure"]["message"] == "m"  # a failure's text stays readable
    assert is_encoded_payload(encoded[2]["failure"]["cause"]["details"])
    assert [map_command(c, conv.decode_sync) for c in encoded] == COMMANDS

    events = _events()
    wire = json.loads(json.dumps(events))
    stored = [_encode_event(conv, e) for e in wire]
    assert SECRET not in json.dumps(stored)
    assert asyncio.run(conv.decode_events(stored)) == events


def _encode_event(conv: PayloadConverter, event: dict[str, Any]) -> dict[str, Any]:
    return map_event(event, conv.encode_sync)


def test_the_tables_name_only_fields_that_the_protocol_has() -> None:
    from sdk.protocol import ATTRIBUTE_SHAPES, COMMAND_CLASSES, kind_of
    from sdk.protocol.frames import ENGINE_MESSAGES, WORKER_MESSAGES

    shapes: dict[str, set[str]] = {str(k): set(v.__annotations__) for k, v in
                                   ATTRIBUTE_SHAPES.items()}
    shapes.update({kind_of(c): {f.name for f in dataclasses.fields(c)} for c in COMMAND_CLASSES})
    shapes.update({t: {f.name for f in dataclasses.fields(c)}
                   for t, c in {**ENGINE_MESSAGES, **WORKER_MESSAGES}.items()})
    for name, fields in PAYLOAD_FIELDS.items():
        assert set(fields) <= shapes[name], name
    assert set(MARKER_PAYLOAD_FIELDS) == {"side_effect", "local_activity"}


def test_without_a_codec_nothing_changes() -> None:
    conv = PayloadConverter(None)
    assert asyncio.run(conv.encode_commands(COMMANDS)) is COMMANDS
    assert conv.encode_sync({"a": 1}) == {"a": 1}


# ---- failures and their causes ----------------------------------------------------------


def test_an_exception_chain_becomes_a_failure_chain_and_comes_back() -> None:
    try:
        try:
            raise KeyError("card")
        except KeyError as err:
            raise sdk.ApplicationError("charge failed", type="Declined", details={"a": 1},
                                       non_retryable=True) from err
    except sdk.ApplicationError as exc:
        failure = failure_from_exception(exc)
    assert failure["type"] == "Declined" and failure["cause"]["type"] == "KeyError"
    assert "cause" not in failure["cause"]
    rebuilt = exception_from_failure(normalize_failure(failure))
    assert isinstance(rebuilt, sdk.ApplicationError)
    assert (rebuilt.type, rebuilt.details, rebuilt.non_retryable) == ("Declined", {"a": 1}, True)
    assert isinstance(rebuilt.cause, sdk.ApplicationError) and rebuilt.cause.type == "KeyError"
    assert rebuilt.cause.cause is None


def test_an_activity_error_carries_the_activity_s_failure_as_its_cause() -> None:
    activity_failure = normalize_failure(_failure({"why": 1}, _failure(None)))
    err = sdk.ActivityError(activity_failure, attempt=3, activity_type="charge")
    assert isinstance(err.cause, sdk.ApplicationError) and err.cause.details == {"why": 1}
    assert isinstance(err.cause.cause, sdk.ApplicationError)

    failure = normalize_failure(failure_from_exception(err))
    assert failure["type"] == "ActivityError"
    assert failure["details"] == {"activity_type": "charge", "attempt": 3, "timeout_type": None}
    assert failure["cause"]["details"] == {"why": 1}

    workflow_error = sdk.WorkflowFailureError("failed", failure)
    assert isinstance(workflow_error.cause, sdk.ActivityError)
    assert workflow_error.cause.activity_type == "charge" and workflow_error.cause.attempt == 3
    assert isinstance(workflow_error.cause.cause, sdk.ApplicationError)
    assert workflow_error.cause.cause.details == {"why": 1}


@given(st.integers(0, 3 * MAX_FAILURE_CAUSE_DEPTH))
def test_a_cause_chain_is_cut_at_the_depth_limit(depth: int) -> None:
    failure: dict[str, Any] = _failure(0)
    for i in range(1, depth + 1):
        failure = _failure(i, failure)
    normalized = normalize_failure(failure)
    kept = 0
    current = normalized
    while "cause" in current:
        kept += 1
        current = current["cause"]
    assert kept == min(depth, MAX_FAILURE_CAUSE_DEPTH)
    assert normalize_failure(normalized) == normalized


def test_a_cyclic_cause_chain_ends() -> None:
    a = ValueError("a")
    b = ValueError("b")
    a.__cause__, b.__cause__ = b, a
    failure = failure_from_exception(a)
    assert failure["cause"]["message"] == "b" and "cause" not in failure["cause"]


# ---- the runtime: typed inputs and results in workflow code ----------------------------


@sdk.activity
def price(ctx: sdk.ActivityContext, input: Order) -> Line:
    raise NotImplementedError


@sdk.workflow
async def typed_order(ctx: sdk.WorkflowContext, input: Order) -> dict[str, Any]:
    assert isinstance(input, Order) and isinstance(input.lines[0], Line)
    line = await ctx.execute_activity(price, input, start_to_close_timeout=10)
    assert isinstance(line, Line)
    try:
        await ctx.execute_activity("charge", line, start_to_close_timeout=10)
    except sdk.ActivityError as err:
        assert isinstance(err.cause, sdk.ApplicationError)
        return {"line": line, "cause": err.cause.type, "inner": err.cause.cause.type
                if isinstance(err.cause.cause, sdk.ApplicationError) else None}
    return {"line": line}


ORDER = Order(7, [Line("a", 2, 1.5)], Color.BLUE, dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
              uuid.UUID(int=5))


def test_workflow_code_gets_dataclasses_and_error_causes() -> None:
    sim = EngineSim(typed_order, to_json(ORDER))
    sim.run_task()
    assert sim.scheduled(1)["input"] == to_json(ORDER)
    sim.complete(1, {"sku": "a", "quantity": 2, "price": 3.0})
    sim.run_task()
    assert sim.scheduled(2)["input"] == {"sku": "a", "quantity": 2, "price": 3.0}
    sim.fail(2, _failure(None, _failure(None) | {"type": "Timeout"}) | {"type": "Declined"})
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow", "result": {
        "line": {"sku": "a", "quantity": 2, "price": 3.0}, "cause": "Declined",
        "inner": "Timeout"}}


# ---- docs/sdk.md's example ----------------------------------------------------------------


def _docs_blocks() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
    section = text.split("## Data conversion and codecs", 1)[1].split("\n## ", 1)[0]
    return [block.split("\n", 1)[1] for block in section.split("```python")[1:]
            for block in [block.split("```", 1)[0]]]


def test_the_docs_example_converts_and_encodes_as_it_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    module = types.ModuleType("docs_convert_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(_docs_blocks()[0], "docs/sdk.md", "exec"), module.__dict__)
    namespace = module.__dict__
    order_type, receipt_type = namespace["Order"], namespace["Receipt"]
    codec = namespace["ZlibCodec"]()
    conv = PayloadConverter(codec)
    assert conv.decode_sync(conv.encode_sync({"id": 7})) == {"id": 7}

    charge = namespace["charge"]
    sim = EngineSim(namespace["checkout"], to_json(order_type(7, ["book", "pen"])))
    sim.drive({"charge": lambda input: to_json(charge(None, from_json(input, order_type)))})
    assert sim.final == {"kind": "complete_workflow", "result": {"order_id": 7, "charged": 19.0}}
    assert from_json(sim.final["result"], return_hint(namespace["checkout"])) == receipt_type(
        7, 19.0)
    with pytest.raises(sdk.ApplicationError, match="nothing to charge"):
        charge(None, order_type(8, []))


@sdk.workflow
async def wants_an_order(ctx: sdk.WorkflowContext, input: Order) -> None:
    return None


def test_an_input_that_does_not_fit_fails_the_workflow_task_not_the_run() -> None:
    from workflows.core.state import Status

    sim = EngineSim(wants_an_order, {"id": "not an order"})
    result = sim.run_task()
    assert result.cause == "workflow_error"
    assert result.failure is not None and result.failure["type"] == "PayloadConversionError"
    assert sim.status is Status.RUNNING  # a deploy with fixed hints resumes it
