"""``manage.py runengine``: the ASGI server (daphne) plus the dispatcher and timer loops."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger("sched.engine")


class Command(BaseCommand):
    help = "Serve the sched engine: REST API, worker websocket, dashboard, and the loops."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-loops", action="store_true",
                            help="serve only; leave dispatch and timers to other processes")

    def handle(self, *args: Any, **options: Any) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from schedproject.asgi import application

        from ... import loops

        self.check(display_num_errors=False, fail_level=40)
        run_loops = settings.SCHED.run_loops and not options["no_loops"]
        tasks: list[asyncio.Task[None]] = []

        def ready() -> None:
            if run_loops:
                tasks.extend(loops.start(asyncio.get_event_loop()))
            log.info("sched engine listening on http://%s:%s", options["host"], options["port"])

        server = Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=options["host"],
                                                         port=options["port"]),
            ready_callable=ready,
            ping_interval=20,
            ping_timeout=30,
            websocket_handshake_timeout=10,
            application_close_timeout=5,
            server_name="sched",
        )
        server.run()
        for task in tasks:
            task.cancel()
