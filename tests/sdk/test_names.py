"""``sdk.protocol.names``: one rule for what may name something, used by the command parser
and the ``hello`` frame as by the REST API, so the worker's door and the API's agree."""

from __future__ import annotations

import json

import pytest

from sdk.protocol import InvalidCommand, parse_command
from sdk.protocol.frames import ProtocolError, decode_worker_message
from sdk.protocol.names import InvalidName, check_name, name_problem

BAD = [("a\nb", "U+000A at position 1"), ("\x00", "U+0000 at position 0"),
       ("x\x9f", "U+009F at position 1"), ("\x7f", "U+007F at position 0"),
       ("lone\ud800", "U+D800 at position 4"), (" q", "U+0020 at position 0"),
       ("q\u3000", "U+3000 at position 1"), (".", "'.'"), ("..", "'..'"), ("", "empty"),
       ("x" * 256, "at most 255")]


@pytest.mark.parametrize(("value", "says"), BAD)
def test_bad_names_are_refused_saying_why(value: str, says: str) -> None:
    problem = name_problem(value)
    assert problem is not None and says in problem
    with pytest.raises(InvalidName, match="activity type") as info:
        check_name(value, what="activity type")
    assert info.value.code == "invalid_name"


@pytest.mark.parametrize("value", ["a", "a b", "a/b?c#d", "...", ".a", "日本", "x" * 255])
def test_good_names_pass(value: str) -> None:
    assert name_problem(value) is None
    assert check_name(value) == value


@pytest.mark.parametrize(("value", "says"), BAD[:9])
@pytest.mark.parametrize(("kind", "key", "extra"), [
    ("schedule_activity", "activity_type", {"seq": 1}),
    ("schedule_activity", "task_queue", {"seq": 1, "activity_type": "a"}),
    ("record_marker", "marker_name", {"seq": 1}),
    ("continue_as_new", "workflow_type", {}),
    ("continue_as_new", "task_queue", {}),
    ("start_child_workflow", "workflow_id", {"seq": 1, "workflow_type": "c"}),
    ("start_child_workflow", "workflow_type", {"seq": 1, "workflow_id": "c-1"}),
    ("start_child_workflow", "task_queue", {"seq": 1, "workflow_type": "c",
                                            "workflow_id": "c-1"}),
    ("signal_external_workflow", "workflow_id", {"seq": 1, "signal_name": "s"}),
    ("signal_external_workflow", "signal_name", {"seq": 1, "workflow_id": "w"}),
    ("request_cancel_external_workflow", "workflow_id", {"seq": 1}),
])
def test_commands_refuse_bad_names(value: str, says: str, kind: str, key: str,
                                   extra: dict[str, object]) -> None:
    with pytest.raises(InvalidCommand) as info:
        parse_command({"kind": kind, **extra, key: value})
    assert str(info.value).startswith(f"{key} ") and says in str(info.value)


@pytest.mark.parametrize(("value", "says"), BAD[:9])
@pytest.mark.parametrize("key", ["task_queue", "workflow_types", "activity_types"])
def test_hello_refuses_bad_names(value: str, says: str, key: str) -> None:
    frame = {"type": "hello", "task_queue": "q", key: value if key == "task_queue" else [value]}
    with pytest.raises(ProtocolError) as info:
        decode_worker_message(json.dumps(frame))
    assert info.value.code == "invalid_name"
    assert says in info.value.message and key in info.value.message


def test_hello_with_good_names_decodes() -> None:
    hello = decode_worker_message(json.dumps(
        {"type": "hello", "task_queue": "q 1", "workflow_types": ["a/b"],
         "activity_types": ["x.y"]}))
    assert hello.task_queue == "q 1"  # type: ignore[attr-defined]
