from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Prometheus scrapes without a token, like /healthz: keep /metrics off the public edge.
    path("", include("django_prometheus.urls")),
    path("", include("workflows.urls")),
]

handler404 = "workflows.api.errors.not_found_view"
handler500 = "workflows.api.errors.server_error_view"
