"""The dashboard's URLs, mounted at the site root. None starts with ``api/``, ``admin/``,
``healthz``, ``metrics`` or ``ws/``. Workflow ids may contain ``/``, so a run's page takes the
id as a ``workflow_id`` segment and the actions name the run in their form, not in the URL."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import URLPattern, path, re_path

from workflows.api import paths  # noqa: F401  (registers the workflow_id converter)

from . import logins, views

app_name = "dashboard"

urlpatterns: list[URLPattern] = [
    path("", views.workflow_list, name="workflows"),
    path("login/", auth_views.LoginView.as_view(
        template_name="dashboard/login.html", redirect_authenticated_user=True,
        authentication_form=logins.LoginForm,
        next_page="dashboard:workflows"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("start/", views.workflow_start, name="workflow-start"),
    path("signal/", views.workflow_signal, name="workflow-signal"),
    path("query/", views.workflow_query, name="workflow-query"),
    path("cancel/", views.workflow_cancel, name="workflow-cancel"),
    path("terminate/", views.workflow_terminate, name="workflow-terminate"),
    path("workers/", views.worker_list, name="workers"),
    path("workflows/<workflow_id:workflow_id>", views.workflow_detail, name="workflow"),
    path("live/<workflow_id:workflow_id>", views.workflow_live, name="workflow-live"),
    path("history/<workflow_id:workflow_id>", views.workflow_history_download,
         name="workflow-history"),
    re_path(r"^static/(?P<path>.+)$", views.static, name="static"),
]
