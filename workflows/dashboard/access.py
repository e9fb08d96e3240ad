"""Who may do what on the dashboard.

Viewing runs needs ``workflows.view_execution``, the Workers page
``dispatch.view_workersession``, and each action its own permission on the execution model
(``workflows.start_workflow``, ``signal_workflow``, ``cancel_workflow``,
``terminate_workflow``). Staff users may do everything; an inactive user nothing. Views are
guarded with ``require``; templates show only what ``allowed`` grants (``can`` in their
context), so a button a user sees is one that will work.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Final

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

PERMISSIONS: Final = {
    "view": "workflows.view_execution",
    "start": "workflows.start_workflow",
    "signal": "workflows.signal_workflow",
    "cancel": "workflows.cancel_workflow",
    "terminate": "workflows.terminate_workflow",
    "workers": "dispatch.view_workersession",
}


def allowed(user: Any, action: str) -> bool:
    """Whether ``user`` may do ``action`` (a key of ``PERMISSIONS``)."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    return bool(user.is_staff or user.has_perm(PERMISSIONS[action]))


def grants(user: Any) -> dict[str, bool]:
    """Every action and whether ``user`` may do it (the templates' ``can``)."""
    return {action: allowed(user, action) for action in PERMISSIONS}


View = Callable[..., HttpResponse]


def require(action: str) -> Callable[[View], View]:
    """Log in first (a redirect to the login page), then ``action``'s permission (a 403 page
    saying which, the request otherwise untouched)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not allowed(request.user, action):
                return render(request, "dashboard/error.html", {
                    "message": f"You may not do this: it needs the permission "
                               f"{PERMISSIONS[action]} (or staff status)."}, status=403)
            return view(request, *args, **kwargs)

        return login_required(guarded)

    return decorate


def context(request: HttpRequest) -> dict[str, Any]:
    """Context processor: ``can``, the signed-in user's grants."""
    return {"can": grants(request.user) if hasattr(request, "user") else {}}
