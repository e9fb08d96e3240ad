"""docs/protocol.md's tables, generated from the package so they cannot drift from it.

The document keeps its prose; each table sits between ``<!-- generated: NAME -->`` and
``<!-- end generated -->`` and is rendered here from the frame classes, the command classes,
the retry policy, the event attribute shapes, the failure shape and the limits.
``python -m sdk.protocol.docs`` rewrites the tables in place; ``--check`` only reports (exit 1)
whether the file differs from what would be generated, as tests/sdk/test_protocol_docs.py does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ForwardRef

from sdk.protocol.commands import COMMAND_CLASSES, DEFAULT_RETRY_POLICY, RetryPolicy, kind_of
from sdk.protocol.events import ATTRIBUTE_SHAPES
from sdk.protocol.failures import FAILURE_FIELDS, WORKFLOW_TASK_FAILURE_CAUSES, Failure
from sdk.protocol.frames import ENGINE_MESSAGES, WORKER_MESSAGES, Message
from sdk.protocol.limits import LIMITS
from sdk.protocol.payloads import MARKER_PAYLOAD_FIELDS, PAYLOAD_FIELDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

_BLOCK = re.compile(
    r"(?P<open><!-- generated: (?P<name>[a-z-]+) -->\n).*?(?P<close><!-- end generated -->)",
    re.DOTALL,
)

# JSON names for the annotations the package uses (``| None`` reads "or null").
_JSON_NAMES = {
    "str": "string", "int": "integer", "float": "number", "bool": "boolean",
    "list[str]": "string[]", "tuple[str, ...]": "string[]",
    "list[WireCommand]": "command[]", "list[WireEvent]": "event[]",
    "list[JSONValue]": "JSON[]",
    "JSONObject": "object", "JSONValue": "JSON", "Failure": "failure", "WireFailure": "failure",
    "RetryPolicy": "retry policy", "ParentRef": "{`workflow_id`, `run_id`}",
}


def json_type(annotation: object) -> str:
    """The JSON type an annotation (a string, or a TypedDict's ForwardRef) stands for."""
    text = annotation.__forward_arg__ if isinstance(annotation, ForwardRef) else str(annotation)
    if text.startswith("NotRequired[") and text.endswith("]"):
        return json_type(text.removeprefix("NotRequired[").removesuffix("]")) + " (optional)"
    base = text.removesuffix(" | None")
    name = _JSON_NAMES[base]
    return name if base == text else f"{name} or null"


def _prose(doc: str | None) -> str:
    """A docstring as one markdown line: RST ``code`` becomes `code`."""
    return " ".join((doc or "").split()).replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    lines += [f"| {' | '.join(_cell(c) for c in row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def _default(f: dataclasses.Field[Any]) -> str | None:
    if f.default is DEFAULT_RETRY_POLICY:
        return "null"
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _fields(cls: type[Any], *, skip: tuple[str, ...] = ()) -> str:
    parts = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = _default(f)
        part = f"`{f.name}` {json_type(f.type)}"
        parts.append(part if default is None else f"{part} = `{default}`")
    return "; ".join(parts) or "none"


def frames(registry: dict[str, type[Message]]) -> str:
    """One row per frame type: its fields (type, default when it may be left out)."""
    return _table(("type", "fields", "meaning"), (
        (f"`{name}`", _fields(cls), _prose(cls.__doc__)) for name, cls in registry.items()
    ))


def commands() -> str:
    """One row per command kind: its fields and the events it writes, in order."""
    return _table(("kind", "fields", "event written", "meaning"), (
        (f"`{kind_of(cls)}`", _fields(cls, skip=("kind",)),
         ", then ".join(cls.writes), _prose(cls.__doc__))
        for cls in COMMAND_CLASSES
    ))


def retry_policy() -> str:
    """The retry policy's keys, their defaults and what each means."""
    return _table(("key", "type", "default", "meaning"), (
        (f"`{f.name}`", json_type(f.type), f"`{_default(f)}`", f.metadata["doc"])
        for f in dataclasses.fields(RetryPolicy)
    ))


def failure() -> str:
    """The keys of a failure object."""
    return _table(("key", "type", "meaning"), (
        (f"`{name}`", json_type(annotation), FAILURE_FIELDS[name])
        for name, annotation in Failure.__annotations__.items()
    ))


def task_failure_causes() -> str:
    """Each workflow task failure cause and what it means."""
    return _table(("cause", "meaning"), (
        (f"`{cause}`", meaning) for cause, meaning in WORKFLOW_TASK_FAILURE_CAUSES.items()
    ))


def events() -> str:
    """One row per event type: the attributes it carries."""
    return _table(("event type", "attributes", "meaning"), (
        (f"`{event_type.value}`",
         "; ".join(f"`{name}` {json_type(annotation)}"
                   for name, annotation in shape.__annotations__.items()) or "none",
         _prose(shape.__doc__))
        for event_type, shape in ATTRIBUTE_SHAPES.items()
    ))


def limits() -> str:
    """Every limit: its name in ``sdk.protocol.limits``, its value, what it bounds."""
    return _table(("limit", "value", "bounds"), (
        (f"`{name}`", f"{value:,}" if isinstance(value, int) else f"{value:g}", meaning)
        for name, value, meaning in LIMITS
    ))


def payload_fields() -> str:
    """Which fields of each command, frame and event hold payloads a codec encodes."""
    rows = [(f"`{name}`", ", ".join(f"`{f}`" for f in fields))
            for name, fields in PAYLOAD_FIELDS.items()]
    rows += [(f"`record_marker` / `MarkerRecorded` named `{marker}`",
              ", ".join(f"`{f}`" for f in fields))
             for marker, fields in MARKER_PAYLOAD_FIELDS.items()]
    return _table(("command, frame or event", "payload fields"), rows)


SECTIONS: dict[str, Callable[[], str]] = {
    "frames-worker": lambda: frames(WORKER_MESSAGES),
    "frames-engine": lambda: frames(ENGINE_MESSAGES),
    "commands": commands,
    "retry-policy": retry_policy,
    "failure": failure,
    "task-failure-causes": task_failure_causes,
    "events": events,
    "limits": limits,
    "payload-fields": payload_fields,
}


def render(text: str) -> str:
    """``text`` with every generated block rendered anew; an unknown block name is an error."""

    def block(match: re.Match[str]) -> str:
        section = SECTIONS.get(match["name"])
        if section is None:
            raise ValueError(f"docs/protocol.md names an unknown generated block: {match['name']}")
        return f"{match['open']}{section()}{match['close']}"

    return _BLOCK.sub(block, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdk.protocol.docs", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file differs from what would be generated")
    parser.add_argument("path", nargs="?", type=Path, default=DOC)
    args = parser.parse_args(argv)
    current = args.path.read_text(encoding="utf-8")
    generated = render(current)
    if generated == current:
        return 0
    if args.check:
        print(f"{args.path} is out of date: run python -m sdk.protocol.docs", file=sys.stderr)
        return 1
    args.path.write_text(generated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
