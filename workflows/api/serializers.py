"""Fields and base classes the API's nested input/output serializers are built from.

Input is strict: a string field takes only JSON strings (no silent ``123 -> "123"``), a
number field only JSON numbers, unknown keys are refused, and every string that reaches the
database is free of NUL characters and lone surrogates (Postgres refuses both, SQLite cannot
encode the second). JSON payloads (``input``) are checked the same way, all the way down.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from schedproject import config
from sdk.protocol.limits import MAX_NAME_LENGTH, MAX_WORKFLOW_ID_LENGTH
from sdk.protocol.names import INVALID_NAME, name_problem
from sdk.protocol.payloads import payload_problem, text_problem

MAX_REASON_LENGTH = 4096
MAX_WAIT_SECONDS = 60.0  # the default of SCHED_MAX_WAIT_SECONDS


def check_json_value(value: Any) -> None:
    """Raise ``ValidationError`` unless ``value`` can be stored as JSON by every backend
    (``sdk.protocol.payload_problem``: the worker socket checks payloads the same way)."""
    problem = payload_problem(value)
    if problem:
        raise serializers.ValidationError(problem)


class JSONValueField(serializers.JSONField):
    """Any JSON value (including null), checked with ``check_json_value``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("default", None)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        check_json_value(data)
        return data


class StrictCharField(serializers.CharField):
    """A JSON string only; kept as sent (no trimming); no NUL, no lone surrogates."""

    default_error_messages = {"not_a_string": "must be a string."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        problem = text_problem(data)
        if problem:
            raise serializers.ValidationError(problem)
        return data


def check_name_value(value: str, *, max_length: int = MAX_NAME_LENGTH) -> str:
    """``value`` if it can name something (``sdk.protocol.names``), else a ``ValidationError``
    with the code ``invalid_name`` saying which character, and where. For any door of the API
    (serializers here, or a view that decodes its input by hand)."""
    problem = name_problem(value, max_length=max_length)
    if problem is not None:
        raise serializers.ValidationError(problem, code=INVALID_NAME)
    return value


class NameField(StrictCharField):
    """A string that names something: a workflow id or type, a task queue, a signal name."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_NAME_LENGTH)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str) and (self.max_length is None or len(data) <= self.max_length):
            check_name_value(data, max_length=len(data))  # its characters (invalid_name)
        return super().to_internal_value(data)  # its type and length (invalid_input)


def name_field(**kwargs: Any) -> NameField:
    """A workflow type, task queue or signal name."""
    return NameField(max_length=MAX_NAME_LENGTH, **kwargs)


def workflow_id_field(**kwargs: Any) -> NameField:
    return NameField(max_length=MAX_WORKFLOW_ID_LENGTH, **kwargs)


class StrictNumberField(serializers.FloatField):
    """A JSON number only (no strings, no booleans), finite."""

    default_error_messages = {"not_a_number": "must be a number."}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("not_a_number")
        if not math.isfinite(data):
            self.fail("not_a_number")
        return super().to_internal_value(data)


class RunIdField(serializers.UUIDField):
    """A run id: a UUID, given back as its canonical string."""

    def to_internal_value(self, data: Any) -> str:  # type: ignore[override]
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        value: uuid.UUID = super().to_internal_value(data)
        return str(value)


class InputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A request body or query: unknown keys are refused, each one named."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, Mapping):
            unknown = [k for k in self.initial_data if k not in self.fields]
            if unknown:
                raise serializers.ValidationError({k: ["unknown field."] for k in unknown})
        return attrs


class QuerySerializer(InputSerializer):
    """Query parameters: one value each (the last, as Django gives it)."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "dict"):
            data = data.dict()
        return super().to_internal_value(data)


class WaitField(serializers.FloatField):
    """``wait``: seconds to long-poll, 0 to answer at once; above the cap
    (``SCHED_MAX_WAIT_SECONDS``, 60 by default) it is clamped."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", 0.0)
        kwargs.setdefault("min_value", 0.0)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return min(value, config.get().max_wait_seconds)


class ErrorDetailSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The ``error`` object (documentation only; ``fields`` would shadow ``Serializer.fields``
    as a class attribute, hence ``get_fields``)."""

    def get_fields(self) -> dict[str, serializers.Field]:  # type: ignore[type-arg]
        return {
            "code": serializers.CharField(help_text="A stable machine code, e.g. `not_found`."),
            "message": serializers.CharField(),
            "fields": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()), required=False,
                help_text="With `invalid_input`: the messages for each bad field."),
            "run_id": serializers.CharField(
                required=False, help_text="With a conflict: the run it is about."),
        }


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The body of every error answer (documentation only)."""

    error = ErrorDetailSerializer()
