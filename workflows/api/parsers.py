"""The API's one parser: strict JSON, with the body size capped before it is read.

DRF's ``JSONParser`` reads the stream without Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` check
and lets a ``RecursionError`` (a deeply nested body) escape as a 500; this one refuses a
declared or actual body larger than ``SCHED_MAX_PAYLOAD_BYTES`` (413) and answers
any undecodable body with 400 ``malformed_json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import exceptions, parsers

from schedproject import config

from .errors import PayloadTooLarge


def max_payload_bytes() -> int:
    return config.get().max_payload_bytes


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes | str) -> Any:
    """A request body as the API reads it: strict JSON in UTF-8 (no NaN or Infinity).
    Raises ``ValueError`` or ``RecursionError`` for anything else."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return json.loads(text, parse_constant=_reject_constant)


class LimitedJSONParser(parsers.JSONParser):
    def parse(self, stream: IO[Any], media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = max_payload_bytes()
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and str(declared).isdigit() and int(declared) > limit:
            raise PayloadTooLarge(limit=limit, size=int(declared))
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(limit=limit)
        try:
            return decode_json(body)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"malformed JSON: {exc}") from None
