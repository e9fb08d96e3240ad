"""A thread of its own for a loop's database work.

Channels' ``database_sync_to_async`` runs every consumer's database work on one shared
thread. The dispatcher and the timer manager must not queue behind that traffic (a timer
that fires late because a hundred completions were ahead of it is a late timer), so each
runs its sync database calls on a dedicated thread, with its own connection, closed and
reopened around each call as Django expects of long-lived threads.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections

T = TypeVar("T")


class DbThread:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sched-{name}")

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            close_old_connections()
            try:
                return fn(*args, **kwargs)
            finally:
                close_old_connections()

        return await asyncio.get_running_loop().run_in_executor(self._executor,
                                                                functools.partial(call))
