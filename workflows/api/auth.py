"""Bearer-token authentication for the REST API.

``Authorization: Bearer <token>``. Tokens of scope ``admin`` or ``api`` may use the API; a
valid token of another scope (``worker``) is refused with 403, an unknown, revoked or
malformed one with 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from workflows.models import ApiToken, TokenScope

from .tokens import token_mark_used


@dataclass(frozen=True)
class TokenUser:
    """``request.user`` for a token-authenticated request."""

    token: ApiToken
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def username(self) -> str:
        return f"token:{self.token.name}"


KEYWORD = "Bearer"


def bearer_token(header: str) -> ApiToken | None:
    """The live API token an ``Authorization`` header names; ``None`` without a ``Bearer``
    header; ``AuthenticationFailed`` (401) for a malformed, unknown or revoked token and
    ``PermissionDenied`` (403) for a token of another scope. For the API's views and for
    the ASGI guard that checks a request before its body is read (``workflows.api.guard``)."""
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != KEYWORD.lower():
        return None
    raw = raw.strip()
    # A token is printable ASCII: anything else (a lone surrogate, a control character)
    # cannot be one, and must not reach the digest.
    if not raw or not raw.isascii() or not raw.isprintable() or " " in raw:
        raise exceptions.AuthenticationFailed("malformed bearer token")
    token = ApiToken.verify(raw, scope=TokenScope.API)
    if token is None:
        if ApiToken.verify(raw, scope=TokenScope.WORKER) is not None:
            raise exceptions.PermissionDenied("this token's scope does not allow the API")
        raise exceptions.AuthenticationFailed("invalid or revoked token")
    return token


def authenticate_header(header: str) -> tuple[TokenUser, ApiToken] | None:
    """The caller an ``Authorization`` header names: None if it is not a bearer token (the
    permission check answers 401), ``AuthenticationFailed`` / ``PermissionDenied`` if the
    token is malformed, unknown, revoked or of another scope (``bearer_token``)."""
    token = bearer_token(header)
    if token is None:
        return None  # not ours: answered 401 by the permission check
    token_mark_used(token)
    return TokenUser(token), token


SCOPE_TOKEN = "sched.api_token"
"""Where ``workflows.api.guard`` leaves the token it verified, in the request's ASGI scope:
``(the Authorization header, the ApiToken)``."""


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = KEYWORD

    def authenticate(self, request: Request) -> tuple[TokenUser, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        # The ASGI guard may have verified this request's token before reading its body.
        checked = getattr(request._request, "scope", {}).get(SCOPE_TOKEN)
        if checked is None or checked[0] != header:
            return authenticate_header(header)
        token_mark_used(checked[1])
        return TokenUser(checked[1]), checked[1]

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
