"""Data conversion: typed values to JSON and back, and the pluggable ``PayloadCodec``.

Two layers, as in Temporal's data converter:

* ``to_json`` turns what user code returns or passes (dataclasses, pydantic models, enums,
  datetimes, UUIDs, tuples, sets, ...) into plain JSON values on the way out; ``from_json``
  rebuilds them on the way in from a type hint (the ``input`` parameter of a workflow or
  activity function, or a return annotation / ``result_type=`` for results). Without a hint
  (or with ``Any``) a value stays the JSON the engine holds. pydantic is duck-typed
  (``model_dump`` / ``model_validate``), so it is not a dependency.
* ``PayloadConverter`` applies a ``PayloadCodec`` (bytes in, bytes out: encryption,
  compression) to every payload of the commands, frames and events a worker or client
  handles, as ``sdk.protocol.PAYLOAD_FIELDS`` lists them. An encoded payload is the one-key
  object ``{"__sched_codec__": "<base64>"}``; anything else decodes to itself, so runs started
  before a codec was configured keep working.

A codec may be sync or async. The walks over commands and events are sync functions taking a
per-payload function; the async path runs a walk once to collect the payloads, awaits the codec
on each, and runs it again to put the results in place. Rejected: one walk per flavour (the
same structure knowledge twice).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import enum
import functools
import inspect
import json
import threading
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from sdk._errors import ApplicationError
from sdk.protocol.failures import failure_chain
from sdk.protocol.payloads import (
    CODEC_KEY,
    MARKER_PAYLOAD_FIELDS,
    PAYLOAD_FIELDS,
    is_encoded_payload,
)

__all__ = [
    "PayloadCodec",
    "PayloadConversionError",
    "PayloadConverter",
    "from_json",
    "input_hint",
    "return_hint",
    "to_json",
]


@runtime_checkable
class PayloadCodec(Protocol):
    """Turns a payload's bytes (its UTF-8 JSON text) into other bytes and back, e.g. to
    encrypt or compress it. ``encode``/``decode`` may be plain or ``async`` methods;
    ``decode(encode(b)) == b``."""

    def encode(self, data: bytes) -> bytes | Awaitable[bytes]: ...

    def decode(self, data: bytes) -> bytes | Awaitable[bytes]: ...


class PayloadConversionError(ApplicationError):
    """A payload could not be rebuilt as the type its function declares, or decoded."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="PayloadConversionError", non_retryable=True)


# ---- values: out ----------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """``value`` as plain JSON values: dataclasses and pydantic models become objects, enums
    their values, tuples and sets arrays, datetimes/dates/times ISO 8601 strings, UUIDs and
    Decimals strings. Anything else is returned as is (JSON encoding reports it)."""
    try:
        return _to_json(value)
    except RecursionError:
        raise TypeError("the value nests too deeply (or refers to itself)") from None


def _to_json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _to_json(value.value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        return model_dump(mode="json")
    if isinstance(value, Mapping):
        return {(k.value if isinstance(k, enum.Enum) else k): _to_json(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_to_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


# ---- values: in -----------------------------------------------------------------------


def from_json(value: Any, hint: Any) -> Any:
    """``value`` (plain JSON) rebuilt as ``hint`` says: dataclasses (recursively, by their
    fields' hints; unknown keys are ignored), pydantic models, enums, datetimes, dates, times,
    UUIDs, Decimals, tuples, sets, ``list[X]``, ``dict[K, V]``, ``X | None`` and other unions
    (the first member the value fits). ``Any``, no hint, or null: ``value`` unchanged.

    Lenient where nothing is to be rebuilt: a value whose shape does not match a plain hint
    (``list[str]`` given an object, ``int`` given a string) is passed on as it is, as it was
    before type hints were read, so loosely annotated code keeps working. What cannot be
    rebuilt as asked (a dataclass, model or enum the value does not fit) raises
    ``PayloadConversionError``."""
    try:
        return _from_json(value, hint, strict=False)
    except PayloadConversionError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise PayloadConversionError(f"cannot convert {_short(value)} to {_name(hint)}: {err}"
                                     ) from err


class _Mismatch(TypeError):
    """The value does not have the hint's shape (strict mode: a union member is tried)."""


def _from_json(value: Any, hint: Any, *, strict: bool) -> Any:
    if value is None or hint is None or hint is type(None) or hint is Any:
        return value
    if hint is inspect.Parameter.empty or isinstance(hint, typing.TypeVar):
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _from_json(value, args[0], strict=strict)
    if origin is typing.Union or origin is types.UnionType:
        return _from_union(value, args, strict=strict)
    if origin is typing.Literal:
        if strict and value not in args:
            raise _Mismatch(f"{value!r} is not one of {args!r}")
        return value
    if origin is not None:
        return _from_generic(value, origin, args, strict=strict)
    if not isinstance(hint, type):
        return value  # a forward reference, a NewType, ...: leave it
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise _Mismatch(f"expected an object for {hint.__name__}")
        hints = _type_hints(hint)
        kwargs = {f.name: _from_json(value[f.name], hints.get(f.name, Any), strict=False)
                  for f in dataclasses.fields(hint) if f.init and f.name in value}
        return hint(**kwargs)
    validate = getattr(hint, "model_validate", None)
    if callable(validate):
        return validate(value)
    if issubclass(hint, enum.Enum):
        return hint(value)
    return _from_scalar(value, hint, strict=strict)


def _from_scalar(value: Any, hint: type, *, strict: bool) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    parse = _PARSERS.get(hint)
    if parse is not None and isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            return parse(value)
        except (TypeError, ValueError):
            if strict:
                raise _Mismatch(f"{value!r} is not a {hint.__name__}") from None
            return value
    if hint in (tuple, set, frozenset, list) and isinstance(value, list):
        return hint(value)
    if strict and not _is_instance(value, hint):
        raise _Mismatch(f"expected {hint.__name__}, got {type(value).__name__}")
    return value


_PARSERS: dict[type, Callable[[Any], Any]] = {
    dt.datetime: lambda v: dt.datetime.fromisoformat(v) if isinstance(v, str) else _no(v),
    dt.date: lambda v: dt.date.fromisoformat(v) if isinstance(v, str) else _no(v),
    dt.time: lambda v: dt.time.fromisoformat(v) if isinstance(v, str) else _no(v),
    uuid.UUID: lambda v: uuid.UUID(v) if isinstance(v, str) else _no(v),
    Decimal: lambda v: Decimal(str(v)),
}


def _no(value: Any) -> Any:
    raise TypeError(f"cannot parse {type(value).__name__}")


def _is_instance(value: Any, hint: type) -> bool:
    if hint is int and isinstance(value, bool):
        return False
    try:
        return isinstance(value, hint)
    except TypeError:  # a TypedDict, a Protocol, ...: cannot tell
        return True


def _from_union(value: Any, args: tuple[Any, ...], *, strict: bool) -> Any:
    errors: list[str] = []
    for member in (a for a in args if a is not type(None)):
        try:
            return _from_json(value, member, strict=True)
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            errors.append(str(err))
    if strict:
        raise _Mismatch("no member of the union takes it: " + "; ".join(errors))
    return value


def _from_generic(value: Any, origin: Any, args: tuple[Any, ...], *, strict: bool) -> Any:
    import collections.abc as abc

    if origin in (list, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set,
                  abc.MutableSet, abc.Iterable, abc.Collection, tuple):
        if not isinstance(value, list):
            if strict:
                raise _Mismatch(f"expected an array, got {type(value).__name__}")
            return value
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if args and len(args) != len(value):
                if strict:
                    raise _Mismatch(f"expected {len(args)} items, got {len(value)}")
                return value
            return tuple(_from_json(v, a, strict=strict)
                         for v, a in zip(value, args or [Any] * len(value), strict=True))
        item = args[0] if args else Any
        items = [_from_json(v, item, strict=strict) for v in value]
        if origin is tuple:
            return tuple(items)
        if origin in (set, abc.Set, abc.MutableSet):
            return set(items)
        return frozenset(items) if origin is frozenset else items
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        if not isinstance(value, Mapping):
            if strict:
                raise _Mismatch(f"expected an object, got {type(value).__name__}")
            return value
        key, item = (args[0], args[1]) if len(args) == 2 else (Any, Any)
        return {_from_key(k, key): _from_json(v, item, strict=strict) for k, v in value.items()}
    return value


def _from_key(key: Any, hint: Any) -> Any:
    if hint is int and isinstance(key, str):
        try:
            return int(key)  # JSON object keys are strings
        except ValueError:
            return key
    return _from_json(key, hint, strict=False)


def _type_hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:  # unresolvable forward references: no conversion, as without hints
        return {}


@functools.lru_cache(maxsize=1024)
def input_hint(fn: Callable[..., Any]) -> Any:
    """The type hint of ``fn(ctx, input)``'s second parameter, or ``Any``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return Any
    if len(params) < 2:
        return Any
    return _type_hints(fn).get(params[1].name, Any)


@functools.lru_cache(maxsize=1024)
def return_hint(fn: Callable[..., Any]) -> Any:
    """``fn``'s return annotation (of an ``async def``, what it returns), or ``Any``."""
    return _type_hints(fn).get("return", Any)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or repr(hint)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---- payloads: the codec over commands, frames and events -----------------------------

PayloadFn = Callable[[Any], Any]


def _map_failure(failure: Any, fn: PayloadFn) -> Any:
    """``failure`` with ``fn`` applied to the ``details`` of it and each of its causes (a
    chain cut at the depth limit loses its tail here, as ``normalize_failure`` cuts it)."""
    if not isinstance(failure, Mapping):
        return failure
    rebuilt: dict[str, Any] | None = None
    for item in reversed(failure_chain(failure)):
        new = {k: v for k, v in item.items() if k != "cause"}
        new["details"] = fn(item.get("details"))
        if rebuilt is not None:
            new["cause"] = rebuilt
        rebuilt = new
    return rebuilt


def _map_field(obj: Mapping[str, Any], path: str, fn: PayloadFn) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    new = dict(obj)
    if head not in obj:
        return new
    if rest:
        inner = obj[head]
        if isinstance(inner, Mapping):
            new[head] = _map_field(inner, rest, fn)
        return new
    new[head] = _map_failure(obj[head], fn) if head == "failure" else fn(obj[head])
    return new


def _map_fields(obj: Mapping[str, Any], paths: tuple[str, ...], fn: PayloadFn
                ) -> dict[str, Any]:
    new = dict(obj)
    for path in paths:
        new = _map_field(new, path, fn)
    return new


def map_command(command: Mapping[str, Any], fn: PayloadFn) -> dict[str, Any]:
    """A wire command with ``fn`` applied to each of its payloads."""
    kind = command.get("kind")
    if kind == "record_marker":
        return _map_fields(command, MARKER_PAYLOAD_FIELDS.get(str(command.get("marker_name")),
                                                              ()), fn)
    return _map_fields(command, PAYLOAD_FIELDS.get(str(kind), ()), fn)


def map_event(event: Mapping[str, Any], fn: PayloadFn) -> dict[str, Any]:
    """A wire event with ``fn`` applied to each payload of its attributes."""
    attributes = event.get("attributes")
    if not isinstance(attributes, Mapping):
        return dict(event)
    event_type = str(event.get("event_type"))
    if event_type == "MarkerRecorded":
        paths = MARKER_PAYLOAD_FIELDS.get(str(attributes.get("marker_name")), ())
    else:
        paths = PAYLOAD_FIELDS.get(event_type, ())
    if not paths:
        return dict(event)
    return {**event, "attributes": _map_fields(attributes, paths, fn)}


def map_fields(obj: Mapping[str, Any], kind: str, fn: PayloadFn) -> dict[str, Any]:
    """A frame's fields (or a REST body's, named like a frame) with ``fn`` applied to each
    payload ``PAYLOAD_FIELDS[kind]`` names."""
    return _map_fields(obj, PAYLOAD_FIELDS.get(kind, ()), fn)


def _run_in_thread(awaitable: Awaitable[bytes]) -> bytes:
    """Await ``awaitable`` on an event loop of its own, in a thread of its own (a sync caller
    of an async codec; the caller's thread may have a loop running)."""
    result: list[bytes] = []
    error: list[BaseException] = []

    async def wait() -> bytes:
        return await awaitable

    def run() -> None:
        try:
            result.append(asyncio.run(wait()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name="sched-codec", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class PayloadConverter:
    """Applies a ``PayloadCodec`` (or none) to payloads. ``encode``/``decode`` work on one
    value; ``encode_commands``/``decode_events``/... on what a worker sends and receives.
    The ``*_sync`` methods are for sync callers (``sdk.Client``): an async codec runs on a
    loop of its own there."""

    def __init__(self, codec: PayloadCodec | None = None) -> None:
        if codec is not None and not (callable(getattr(codec, "encode", None))
                                      and callable(getattr(codec, "decode", None))):
            raise TypeError("payload_codec must have encode(bytes) and decode(bytes) methods")
        self.codec = codec

    # -- one payload --

    def _encode_bytes(self, value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as err:
            raise TypeError(f"the payload is not JSON-serializable: {err}") from None

    @staticmethod
    def _wrap(data: bytes) -> dict[str, str]:
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"the payload codec's encode returned {type(data).__name__}, "
                            "not bytes")
        return {CODEC_KEY: base64.b64encode(data).decode("ascii")}

    @staticmethod
    def _unwrap(value: Any) -> bytes:
        try:
            return base64.b64decode(value[CODEC_KEY], validate=True)
        except (binascii.Error, ValueError) as err:
            raise PayloadConversionError(f"an encoded payload is not base64: {err}") from None

    @staticmethod
    def _load(data: Any) -> Any:
        if not isinstance(data, bytes | bytearray):
            raise PayloadConversionError(f"the payload codec's decode returned "
                                         f"{type(data).__name__}, not bytes")
        try:
            return json.loads(data)
        except ValueError as err:
            raise PayloadConversionError(f"a decoded payload is not JSON: {err}") from None

    async def encode(self, value: Any) -> Any:
        if self.codec is None:
            return value
        data = self.codec.encode(self._encode_bytes(value))
        return self._wrap(await data if inspect.isawaitable(data) else data)

    async def decode(self, value: Any) -> Any:
        if self.codec is None or not is_encoded_payload(value):
            return value
        data = self.codec.decode(self._unwrap(value))
        return self._load(await data if inspect.isawaitable(data) else data)

    def encode_sync(self, value: Any) -> Any:
        if self.codec is None:
            return value
        data = self.codec.encode(self._encode_bytes(value))
        return self._wrap(_run_in_thread(data) if inspect.isawaitable(data) else data)

    def decode_sync(self, value: Any) -> Any:
        if self.codec is None or not is_encoded_payload(value):
            return value
        data = self.codec.decode(self._unwrap(value))
        return self._load(_run_in_thread(data) if inspect.isawaitable(data) else data)

    # -- structures --

    async def _apply(self, walk: Callable[[PayloadFn], Any], op: Callable[[Any], Awaitable[Any]]
                     ) -> Any:
        found: list[Any] = []

        def collect(value: Any) -> Any:
            found.append(value)
            return value

        walk(collect)
        done = [await op(value) for value in found]
        results = iter(done)
        return walk(lambda _value: next(results))

    async def encode_commands(self, commands: list[Any]) -> list[Any]:
        if self.codec is None:
            return commands
        return list(await self._apply(
            lambda fn: [map_command(c, fn) if isinstance(c, Mapping) else c for c in commands],
            self.encode))

    async def decode_events(self, events: list[Any]) -> list[Any]:
        if self.codec is None:
            return events
        return list(await self._apply(
            lambda fn: [map_event(e, fn) if isinstance(e, Mapping) else e for e in events],
            self.decode))

    async def encode_failure(self, failure: Any) -> Any:
        if self.codec is None:
            return failure
        return await self._apply(lambda fn: _map_failure(failure, fn), self.encode)

    async def decode_failure(self, failure: Any) -> Any:
        if self.codec is None:
            return failure
        return await self._apply(lambda fn: _map_failure(failure, fn), self.decode)

    def encode_failure_sync(self, failure: Any) -> Any:
        if self.codec is None:
            return failure
        return _map_failure(failure, self.encode_sync)

    def decode_failure_sync(self, failure: Any) -> Any:
        if self.codec is None:
            return failure
        return _map_failure(failure, self.decode_sync)
