"""The engine's ASGI application: HTTP (API, dashboard, admin) and the worker websocket."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schedproject.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from dispatch.consumers import WorkerConsumer  # noqa: E402
from workflows.api.fast import LeanApi  # noqa: E402
from workflows.api.guard import BodyGuard  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies are bounded (and a large one's token checked) before anything reads them.
        "http": BodyGuard(LeanApi(django_asgi_app)),
        "websocket": URLRouter([path("ws/worker/", WorkerConsumer.as_asgi())]),
    }
)
