"""HTTP errors of the REST API, mapped in one place.

Every error answer is ``{"error": {"code": ..., "message": ..., **extra}}``. Domain errors
(``SchedError`` and its subclasses) carry their own code, status and extras; DRF's and
Django's exceptions are mapped to stable codes here; anything else is a bug, logged and
answered with a 500 JSON body (the handler of last resort: no HTML stack page, ever).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from schedproject import config
from sdk.protocol.names import INVALID_NAME
from workflows.errors import SchedError

log = logging.getLogger("sched.api")

# A request that finds the database down is told to come back after this long.
DATABASE_RETRY_AFTER_SECONDS = 5


class PayloadTooLarge(exceptions.APIException):
    """413 ``payload_too_large``, with the ``limit`` and, where known, the body's ``size``
    (its ``Content-Length``; a streamed body is refused once it passes the limit)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"
    default_code = "payload_too_large"

    def __init__(self, *, limit: int, size: int | None = None) -> None:
        super().__init__(payload_too_large_message(limit=limit, size=size))
        self.extra: dict[str, int] = {"limit": limit, **({} if size is None else {"size": size})}


def payload_too_large_message(*, limit: int, size: int | None) -> str:
    if size is None:
        return f"the request body is too large: more than the limit of {limit} bytes"
    return f"the request body is too large: {size} bytes, more than the limit of {limit} bytes"


# DRF exception class -> our stable code. Checked in order (subclasses first).
_CODES: tuple[tuple[type[exceptions.APIException], str], ...] = (
    (exceptions.ParseError, "malformed_json"),
    (exceptions.NotAuthenticated, "unauthenticated"),
    (exceptions.AuthenticationFailed, "unauthenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "throttled"),
    (PayloadTooLarge, "payload_too_large"),
)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _message(detail: Any) -> str:
    if isinstance(detail, list | tuple) and detail:
        return _message(detail[0])
    if isinstance(detail, dict) and detail:
        return _message(next(iter(detail.values())))
    return str(detail)


def _flat_fields(detail: Any, name: str, out: dict[str, list[str]]) -> None:
    """Errors of a nested field under dotted names (``workflows.0.workflow_type``), so that
    ``fields`` is always a flat map of field name to messages, as the schema says."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            _flat_fields(value, f"{name}.{key}" if name else str(key), out)
    elif isinstance(detail, list | tuple):
        for i, value in enumerate(detail):
            if isinstance(value, dict | list | tuple):
                _flat_fields(value, f"{name}.{i}" if name else str(i), out)
            else:
                out.setdefault(name or "non_field_errors", []).append(str(value))
    else:
        out.setdefault(name or "non_field_errors", []).append(str(detail))


def _codes(detail: Any) -> set[str]:
    if isinstance(detail, dict):
        return set().union(*(_codes(v) for v in detail.values())) if detail else set()
    if isinstance(detail, list | tuple):
        return set().union(*(_codes(v) for v in detail)) if detail else set()
    return {str(getattr(detail, "code", "invalid"))}


def validation_body(exc: exceptions.ValidationError) -> dict[str, Any]:
    """The error body for a serializer's ``ValidationError``: ``invalid_name`` when every
    problem is a name's character (the message says which, and where), else
    ``invalid_input``; ``fields`` names each bad field either way."""
    fields: dict[str, list[str]] = {}
    _flat_fields(exc.detail if isinstance(exc.detail, dict)
                 else {"non_field_errors": exc.detail}, "", fields)
    if _codes(exc.detail) == {INVALID_NAME}:
        name, messages = next(iter(fields.items()))
        return error_body(INVALID_NAME, f"{name} {messages[0]}", fields=fields)
    names = ", ".join(fields)
    return error_body("invalid_input", f"invalid input: {names}", fields=fields)


def _validation(exc: exceptions.ValidationError) -> Response:
    return Response(validation_body(exc), status=status.HTTP_422_UNPROCESSABLE_ENTITY)


def _api_exception(exc: exceptions.APIException) -> Response:
    code = next((c for cls, c in _CODES if isinstance(exc, cls)), None)
    if code is None:
        code = exc.default_code if isinstance(exc.default_code, str) else "error"
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
    extra = getattr(exc, "extra", None) or {}
    return Response(error_body(code, _message(exc.detail), **extra), status=exc.status_code,
                    headers=headers)


def to_response(exc: BaseException) -> Response:
    """The JSON answer for ``exc``; a 500 (logged) for anything unexpected."""
    if isinstance(exc, SchedError):
        retry_after = exc.extra.get("retry_after")
        return Response(error_body(exc.code, exc.message, **exc.extra), status=exc.http_status,
                        headers={"Retry-After": str(retry_after)} if retry_after else None)
    if isinstance(exc, exceptions.ValidationError):
        return _validation(exc)
    if isinstance(exc, exceptions.APIException):
        return _api_exception(exc)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "not found"), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("forbidden", "permission denied"), status=403)
    if isinstance(exc, OperationalError | InterfaceError):
        log.warning("the database is unavailable: %s", exc)
        return Response(error_body("database_unavailable",
                                   "the database is unavailable; try again shortly"),
                        status=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})
    if isinstance(exc, RequestDataTooBig):
        return _api_exception(PayloadTooLarge(limit=config.get().max_payload_bytes))
    log.error("unhandled error in the API", exc_info=exc)
    return Response(error_body("internal_error", "internal server error"), status=500)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's ``EXCEPTION_HANDLER``: every exception raised in an API view ends here."""
    set_rollback()
    return to_response(exc)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found_view(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: under /api/ an unrouted URL answers JSON too (with DEBUG off)."""
    if _is_api(request):
        return JsonResponse(error_body("not_found", "no such endpoint"), status=404)
    return defaults.page_not_found(request, exception)


def server_error_view(request: HttpRequest) -> HttpResponse:
    """``handler500``: under /api/ an error outside any view still answers JSON."""
    if _is_api(request):
        return JsonResponse(error_body("internal_error", "internal server error"), status=500)
    return defaults.server_error(request)
