"""URLs of the REST API, its schema and docs, and the health check.

Workflow ids may contain ``/`` (clients send it as ``%2F``, which arrives decoded), so the id
is a ``workflow_id`` segment (``workflows.api.paths``: any text, a line feed too) and the
sub-resources are routed before the bare id: a workflow whose id itself ends in
``/history`` (and the like) can be described with ``?run_id=`` only through the list
endpoint's ``workflow_id`` filter.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from .api import paths, views  # noqa: F401  (paths registers the workflow_id converter)

_public = {"authentication_classes": [], "permission_classes": [AllowAny]}

urlpatterns: list[URLPattern | URLResolver] = [
    path("healthz", views.HealthApi.as_view(), name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(**_public), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema", **_public),
         name="api-docs"),
    path("api/workflows", views.WorkflowsApi.as_view(), name="workflows"),
    path("api/workflows:batch", views.WorkflowsBatchApi.as_view(), name="workflows-batch"),
    path("api/workflows/<workflow_id:workflow_id>/history", views.WorkflowHistoryApi.as_view(),
         name="workflow-history"),
    path("api/workflows/<workflow_id:workflow_id>/result", views.WorkflowResultApi.as_view(),
         name="workflow-result"),
    path("api/workflows/<workflow_id:workflow_id>/signals", views.WorkflowSignalApi.as_view(),
         name="workflow-signals"),
    path("api/workflows/<workflow_id:workflow_id>/cancel", views.WorkflowCancelApi.as_view(),
         name="workflow-cancel"),
    path("api/workflows/<workflow_id:workflow_id>/terminate", views.WorkflowTerminateApi.as_view(),
         name="workflow-terminate"),
    path("api/workflows/<workflow_id:workflow_id>/queries/<workflow_id:name>",
         views.WorkflowQueryApi.as_view(), name="workflow-query"),
    path("api/workflows/<workflow_id:workflow_id>/updates/<workflow_id:name>",
         views.WorkflowUpdateApi.as_view(), name="workflow-update"),
    path("api/workflows/<workflow_id:workflow_id>", views.WorkflowDetailApi.as_view(),
         name="workflow-detail"),
    path("api/activities/<str:task_token>/complete", views.ActivityCompleteApi.as_view(),
         name="activity-complete"),
    path("api/activities/<str:task_token>/fail", views.ActivityFailApi.as_view(),
         name="activity-fail"),
    path("api/activities/<str:task_token>/heartbeat", views.ActivityHeartbeatApi.as_view(),
         name="activity-heartbeat"),
    path("", include("workflows.dashboard.urls")),  # the dashboard, last: it has "/"
]
