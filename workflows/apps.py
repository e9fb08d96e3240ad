from __future__ import annotations

from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        from schedproject import config, metrics, tracing

        from . import checks  # noqa: F401  (registers the system checks)

        metrics.install()
        tracing.setup(config.get().otlp_endpoint)
