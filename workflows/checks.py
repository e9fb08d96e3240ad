"""System checks with stable ids: misconfiguration is caught when the engine starts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=False)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[Error]:
    if not settings.SECRET_KEY:
        return [Error("SCHED_SECRET_KEY is not set",
                      hint="Set SCHED_SECRET_KEY to a long random string (or SCHED_DEBUG=true "
                           "for a local run).", id="sched.E001")]
    return []
