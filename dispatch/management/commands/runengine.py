"""``manage.py runengine``: the ASGI server (daphne) plus the dispatcher and timer loops.

SIGTERM (or SIGINT) shuts the engine down gracefully, within ``SCHED_SHUTDOWN_GRACE_SECONDS``:

1. stop listening (new connections are refused) and stop handing workers new work;
2. stop the loops and close their dedicated connections, which releases the leader locks at
   once, so a standby engine takes over without waiting for a timeout;
3. let completions of tasks the connected workers hold commit, while time allows;
4. close the worker sockets (each disconnect hands the worker's remaining leases back, with
   their original input and attempt), then stop the server.

A second signal, or the grace period running out, exits at once: every write is a
transaction, so an abrupt exit loses nothing that a crash would not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger("sched.engine")
POLL_SECONDS = 0.05


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

        self.check(display_num_errors=False, fail_level=40)
        engine = GracefulEngine(run_loops=settings.SCHED.run_loops and not options["no_loops"],
                                grace=settings.SCHED.shutdown_grace_seconds)

        class EngineServer(Server):  # type: ignore[misc]
            def listen_success(self, port: Any) -> None:
                engine.ports.append(port)
                super().listen_success(port)

        server = EngineServer(
            application=application,
            endpoints=build_endpoint_description_strings(host=options["host"],
                                                         port=options["port"]),
            ready_callable=lambda: engine.ready(options["host"], options["port"]),
            signal_handlers=False,
            ping_interval=20,
            ping_timeout=30,
            websocket_handshake_timeout=10,
            application_close_timeout=5,
            server_name="sched",
        )
        engine.server = server
        server.run()
        log.info("sched engine stopped")


class GracefulEngine:
    """The loops beside the server, and the SIGTERM sequence described above."""

    def __init__(self, *, run_loops: bool, grace: float) -> None:
        self.run_loops = run_loops
        self.grace = grace
        self.server: Any = None
        self.ports: list[Any] = []
        self.loop_tasks: list[asyncio.Task[None]] = []
        self.stopping: asyncio.Task[None] | None = None

    def ready(self, host: str, port: int) -> None:
        from ... import loops

        loop = asyncio.get_event_loop()
        if self.run_loops:
            self.loop_tasks.extend(loops.start(loop))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.on_signal, signum)
        log.info("sched engine listening on http://%s:%s", host, port)

    def on_signal(self, signum: int) -> None:
        if self.stopping is not None:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: shutting down within %.1f s", signal.Signals(signum).name, self.grace)
        # The backstop: whatever happens below, the process is gone when the grace ends.
        backstop = threading.Timer(self.grace, self._exit_now)
        backstop.daemon = True
        backstop.start()
        self.stopping = asyncio.get_event_loop().create_task(self.shutdown())

    @staticmethod
    def _exit_now() -> None:
        log.warning("shutdown grace period over: exiting now")
        logging.shutdown()
        os._exit(1)

    async def shutdown(self) -> None:
        from ... import draining, loops

        deadline = time.monotonic() + max(0.0, self.grace - 1.0)
        try:
            for port in self.ports:
                with contextlib.suppress(Exception):
                    port.stopListening()
            draining.start_draining()
            await loops.stop(self.loop_tasks, within=max(0.1, (deadline - time.monotonic()) / 4))
            log.info("loops stopped, leader locks released")
            # Completions of tasks the workers hold commit while time allows ...
            drain_until = deadline - min(1.0, self.grace / 4)
            await _wait_while(draining.busy, until=drain_until)
            held = draining.held_count()
            if held:
                log.warning("shutdown: handing %d unfinished tasks back", held)
            # ... then each disconnect hands back what is left.
            await draining.close_all()
            await _wait_while(draining.live_count, until=deadline)
        except Exception:
            log.exception("graceful shutdown failed; stopping")
        finally:
            # Daphne cancels what is left of the connections' coroutines on the way out.
            self.server.stop()


async def _wait_while(condition: Any, *, until: float) -> None:
    """Poll ``condition`` until it is false or the monotonic clock passes ``until``."""
    for _ in range(int(max(0.0, until - time.monotonic()) / POLL_SECONDS) + 1):
        if not condition() or time.monotonic() >= until:
            return
        await asyncio.sleep(POLL_SECONDS)
