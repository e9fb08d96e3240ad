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
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from schedproject import config
from workflows.errors import SchedError

log = logging.getLogger("sched.api")


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"
    default_code = "payload_too_large"


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


def validation_body(exc: exceptions.ValidationError) -> dict[str, Any]:
    """The ``invalid_input`` error body for a serializer's ``ValidationError``."""
    fields: dict[str, list[str]] = {}
    _flat_fields(exc.detail if isinstance(exc.detail, dict)
                 else {"non_field_errors": exc.detail}, "", fields)
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
    return Response(error_body(code, _message(exc.detail)), status=exc.status_code,
                    headers=headers)


def to_response(exc: BaseException) -> Response:
    """The JSON answer for ``exc``; a 500 (logged) for anything unexpected."""
    if isinstance(exc, SchedError):
        return Response(error_body(exc.code, exc.message, **exc.extra), status=exc.http_status)
    if isinstance(exc, exceptions.ValidationError):
        return _validation(exc)
    if isinstance(exc, exceptions.APIException):
        return _api_exception(exc)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "not found"), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("forbidden", "permission denied"), status=403)
    if isinstance(exc, RequestDataTooBig):
        return _api_exception(PayloadTooLarge(
            f"the request body is larger than the limit of {config.get().max_payload_bytes} "
            "bytes (SCHED_MAX_PAYLOAD_BYTES)"))
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
