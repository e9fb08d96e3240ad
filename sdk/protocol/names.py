"""What may name something: workflow ids and types, task queues, activity types, signal and
marker names.

One check, used at every door (the REST serializers, the dashboard's forms, the worker's
``hello`` frame and the command parser), so a name one door accepts is one every other door
and every URL can carry. A name is refused if it is empty, longer than its limit, holds a
control character (C0 ``U+0000..U+001F``, DEL ``U+007F``, C1 ``U+0080..U+009F``) or a lone
surrogate, is ``.`` or ``..`` (a URL path segment that clients and proxies rewrite), or
begins or ends with whitespace. The message says which character, and where.
"""

from __future__ import annotations

from sdk.protocol.limits import MAX_NAME_LENGTH

__all__ = ["INVALID_NAME", "InvalidName", "check_name", "name_problem"]

INVALID_NAME = "invalid_name"
"""The machine code of a refused name, on every door."""


class InvalidName(ValueError):
    """``name_problem`` as an exception; ``code`` is ``INVALID_NAME``."""

    code = INVALID_NAME


def _is_control(char: str) -> bool:
    point = ord(char)
    return point < 0x20 or 0x7F <= point <= 0x9F


def _is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


def name_problem(value: str, *, max_length: int = MAX_NAME_LENGTH) -> str | None:
    """Why ``value`` cannot name something, or ``None`` if it can."""
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"must be at most {max_length} characters (it has {len(value)})"
    for position, char in enumerate(value):
        if _is_control(char):
            return f"must not contain control characters (U+{ord(char):04X} at position {position})"
        if _is_surrogate(char):
            return f"must not contain lone surrogates (U+{ord(char):04X} at position {position})"
    if value in (".", ".."):
        return f"must not be {value!r}"
    if value[0].isspace():
        return f"must not begin with whitespace (U+{ord(value[0]):04X} at position 0)"
    if value[-1].isspace():
        return (f"must not end with whitespace (U+{ord(value[-1]):04X} at position "
                f"{len(value) - 1})")
    return None


def check_name(value: str, *, what: str = "name", max_length: int = MAX_NAME_LENGTH) -> str:
    """``value`` if it can name something; else ``InvalidName`` saying ``what`` and why."""
    problem = name_problem(value, max_length=max_length)
    if problem is not None:
        raise InvalidName(f"{what} {problem}")
    return value
