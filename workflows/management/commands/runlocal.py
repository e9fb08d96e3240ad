"""``manage.py runlocal``: the engine plus a demo worker, for a first run on one machine.

What it creates and prints is ``workflows.local.run_local``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...local import run_local


class Command(BaseCommand):
    help = "Run the engine and a demo worker on this machine."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        run_local(host=options["host"], port=options["port"],
                  worker=not options["no_worker"], out=self.stdout)
