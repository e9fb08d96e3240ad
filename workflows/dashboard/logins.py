"""Login rate limiting, with Django's own means: an authentication backend, the auth signals
and the cache.

Failed logins are counted per (user name, client address) for ``SCHED_LOGIN_LOCKOUT_SECONDS``;
after ``SCHED_LOGIN_ATTEMPTS`` of them, that pair is refused (even with the right password)
until the window has passed, on the dashboard's login and the admin's alike. A successful
login clears the count. The count lives in the cache: Redis when ``REDIS_URL`` is set (shared
by every engine), else the process's memory. The client address is ``REMOTE_ADDR`` (behind a
proxy, the proxy's, unless the proxy sets it): a guard against guessing one account's
password, not against a distributed attack.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django import forms
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

from schedproject import config


def _key(request: HttpRequest | None, username: str | None) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    digest = hashlib.sha256(f"{username or ''}\x00{address}".encode(errors="replace"))
    return f"login-failures:{digest.hexdigest()}"


def locked_out(request: HttpRequest | None, username: str | None) -> bool:
    """Whether this user name, from this address, has used up its attempts."""
    return int(cache.get(_key(request, username), 0)) >= config.get().login_attempts


class RateLimitedModelBackend(ModelBackend):
    """Django's ``ModelBackend``, refusing a locked-out (user name, address) first."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> Any:
        if locked_out(request, username):
            raise PermissionDenied  # ends authentication: no other backend is asked
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed)
def _count_failure(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None,
                   **kwargs: Any) -> None:
    key = _key(request, credentials.get("username"))
    timeout = config.get().login_lockout_seconds
    if cache.add(key, 1, timeout=timeout):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=timeout)


@receiver(user_logged_in)
def _clear_failures(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    cache.delete(_key(request, user.get_username()))


class LoginForm(AuthenticationForm):
    """The dashboard's login form: says so when the attempts are used up."""

    locked_out = False

    def clean(self) -> dict[str, Any]:
        if locked_out(self.request, self.data.get("username")):
            self.locked_out = True
            minutes = max(1, round(config.get().login_lockout_seconds / 60))
            raise forms.ValidationError(
                f"Too many failed logins for this user from this address: try again in "
                f"{minutes} minutes.", code="locked_out")
        return super().clean()
