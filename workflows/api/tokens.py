"""API tokens: issue, find, revoke, mark used. Shared by the API, the admin and the commands.

Raw tokens are shown once, at issue; only their SHA-256 digest is stored.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from schedproject.transactions import atomic
from workflows.errors import Conflict, NotFound
from workflows.models import ApiToken, TokenScope

# ``last_used_at`` is refreshed at most this often, so a busy client costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_issue(*, name: str, scope: str = TokenScope.ADMIN) -> tuple[ApiToken, str]:
    """A new token and its raw value (shown once, never stored)."""
    return ApiToken.issue(name, scope=scope)


def token_list() -> QuerySet[ApiToken]:
    return ApiToken.objects.order_by("created_at", "id")


def token_find_live(prefix_or_name: str) -> list[ApiToken]:
    """Live tokens whose prefix or name is ``prefix_or_name``."""
    return list(ApiToken.objects.filter(revoked_at__isnull=True)
                .filter(Q(prefix=prefix_or_name) | Q(name=prefix_or_name)).order_by("id"))


def token_revoke(*, prefix_or_name: str, all_matching: bool = False) -> list[ApiToken]:
    """Revoke the live token named by prefix or name. Several matches are refused unless
    ``all_matching``."""
    tokens = token_find_live(prefix_or_name)
    if not tokens:
        raise NotFound(f"no live token with prefix or name {prefix_or_name!r}")
    if len(tokens) > 1 and not all_matching:
        prefixes = ", ".join(t.prefix for t in tokens)
        raise Conflict(f"{len(tokens)} live tokens match {prefix_or_name!r} ({prefixes}): "
                       "name one by its prefix, or pass --all", code="ambiguous")
    tokens_revoke(ApiToken.objects.filter(pk__in=[t.pk for t in tokens]))
    return tokens


def tokens_revoke(tokens: QuerySet[ApiToken]) -> int:
    """Revoke every live token of ``tokens``; the number revoked."""
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def token_mark_used(token: ApiToken) -> None:
    """Record a use of ``token``, at most once per ``LAST_USED_RESOLUTION``."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    with atomic():
        ApiToken.objects.filter(pk=token.pk).filter(stale).update(last_used_at=now)
    token.last_used_at = now
