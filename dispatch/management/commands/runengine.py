"""``manage.py runengine``: the ASGI server (daphne) plus the dispatcher and timer loops.

The engine itself, and its graceful shutdown on SIGTERM, is ``dispatch.lifecycle.Engine``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from schedproject import config

from ...lifecycle import Engine


class Command(BaseCommand):
    help = "Serve the sched engine: REST API, worker websocket, dashboard, and the loops."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-loops", action="store_true",
                            help="serve only; leave dispatch and timers to other processes")

    def handle(self, *args: Any, **options: Any) -> None:
        self.check(display_num_errors=False, fail_level=40)
        sched = config.get()
        Engine(host=options["host"], port=options["port"],
               run_loops=sched.run_loops and not options["no_loops"],
               grace=sched.shutdown_grace_seconds).serve()
