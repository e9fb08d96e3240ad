"""``manage.py runtimers``: the timer manager alone."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from dispatch import loops


class Command(BaseCommand):
    help = "Run the leader-locked timer manager alone."

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(loops.run_forever(dispatcher=False, timers=True))
