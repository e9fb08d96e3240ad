"""``manage.py rundispatcher``: the dispatcher alone (needs REDIS_URL to reach workers)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from ... import loops


class Command(BaseCommand):
    help = "Run the leader-locked dispatcher alone."

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(loops.run_forever(dispatcher=True, timers=False))
