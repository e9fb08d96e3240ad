from __future__ import annotations

import hmac

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django_prometheus import exports

from . import config


def metrics(request: HttpRequest) -> HttpResponse:
    """``/metrics`` (Prometheus text). With ``SCHED_METRICS_TOKEN`` set, only a scrape that
    sends ``Authorization: Bearer <token>`` gets it; without, anyone who reaches the engine
    does (keep it off the public edge: compose's nginx answers 404 for it)."""
    token = config.get().metrics_token
    if token is not None:
        sent = request.META.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(sent.encode("latin-1", "replace"),
                                   f"Bearer {token}".encode("latin-1", "replace")):
            response = HttpResponse("a metrics token is required\n", status=401,
                                    content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    answer: HttpResponse = exports.ExportToDjangoView(request)
    return answer


urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="prometheus-django-metrics"),
    path("", include("workflows.urls")),
]

handler404 = "workflows.api.errors.not_found_view"
handler500 = "workflows.api.errors.server_error_view"
