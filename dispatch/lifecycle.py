"""The engine process's lifecycle: the ASGI server (daphne), the loops beside it, the shutdown.

``Engine(host=..., port=..., run_loops=..., grace=...).serve()`` runs in the foreground until
the process is told to stop; ``manage.py runengine`` parses its arguments and calls it.

Start: daphne listens on ``host:port``; once it does, the engine writes its process row
(``dispatch.services.engine_register``; before any socket is served), the leader-locked
loops (dispatcher, timer manager; ``dispatch.loops``) are scheduled on the server's event
loop, unless ``run_loops`` is off (another process runs them), SIGTERM/SIGINT are handled
there, and the engine beats its row every ``SCHED_ENGINE_HEARTBEAT_SECONDS``. The row is
how the dispatcher's leader tells a dead engine's worker sessions from a live one's: the
sessions of an engine killed on this host are released once its reconnecting workers had
``SCHED_RESUME_GRACE_SECONDS`` to take their leases over, those of one that went silent
after ``SCHED_ENGINE_TIMEOUT_SECONDS``. An engine that finds its row taken (it was paused,
and declared dead) closes its worker sockets: the leases of their sessions went back to the
queue, and the workers reconnect.

SIGTERM (or SIGINT) shuts the engine down gracefully, within ``grace`` seconds
(``SCHED_SHUTDOWN_GRACE_SECONDS``):

1. stop listening (new connections are refused) and stop handing workers new work
   (``draining.start_draining``);
2. stop the loops and close their dedicated connections, which releases the leader locks at
   once, so a standby engine takes over without waiting for a timeout;
3. let completions of tasks the connected workers hold commit, while time allows;
4. close the worker sockets (each disconnect hands the worker's remaining leases back, with
   their original input and attempt), then stop the server.

A second signal, or the grace period running out, exits at once: every write is a
transaction, so an abrupt exit loses nothing that a crash would not.

The process's runtime state, and who owns it. An engine process is otherwise stateless
(the database is the system of record); what it keeps in memory is lost on exit by design:

- this module's ``Engine``: the listening ports, the loops' tasks, the shutdown in progress;
- ``dispatch.draining``: the live worker sockets and whether the engine is draining (written
  by the consumer as sockets come and go, switched to draining by ``Engine`` alone);
- ``dispatch.lessees``: the worker sockets this process serves and the workflow slots
  starts have reserved on them (registered by the consumer on hello, dropped on disconnect);
- ``dispatch.keeper``: the worker sockets whose liveness, token and send buffer it checks,
  and its task (added by the consumer on connect, discarded when the socket goes; the task
  starts with the first socket);
- ``dispatch.wakeup``: the loops waiting for work in this process, and which leaders run here
  (written by the loops and by leader election);
- ``workflows.changes``: the long polls' waiters per run and the after-commit observers
  (subscribed once by ``schedproject.metrics.install`` at start);
- ``workflows.metrics``: when each workflow task started here, to time its completion;
- ``dispatch.engine``: this process's identity (``ENGINE_ID``), fixed at import;
- ``schedproject.transactions``: the SQLite writers' lock; ``schedproject.tracing``: the
  tracer provider; ``workflows.selectors``: the dashboard's cached status counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from django.utils import timezone

from schedproject import config
from schedproject.asgi import application
from schedproject.dbthread import DbPool

from . import draining, loops, services
from .httpdoor import GuardedHTTPFactory

log = logging.getLogger("sched.engine")
POLL_SECONDS = 0.05


def websocket_limit() -> int:
    """The largest websocket message daphne reads from a worker: twice
    ``SCHED_MAX_PAYLOAD_BYTES``. The consumer refuses any frame over that limit itself, and
    fails its task with ``payload_too_large`` (saying the size and the limit), so a frame up to
    twice as large gets that clear answer; only a larger one makes daphne close the socket
    (1009). Daphne's own default (1 MiB) would drop the socket of a worker sending a frame the
    engine takes."""
    return 2 * config.get().max_payload_bytes


class Engine:
    """One engine process: the server, the loops beside it, and the SIGTERM sequence above."""

    def __init__(self, *, host: str, port: int, run_loops: bool, grace: float) -> None:
        self.host = host
        self.port = port
        self.run_loops = run_loops
        self.grace = grace
        self.server: Server | None = None
        self.ports: list[Any] = []
        self.loop_tasks: list[asyncio.Task[None]] = []
        self.stopping: asyncio.Task[None] | None = None
        self.beating: asyncio.Task[None] | None = None
        self.db = DbPool("engine", 1, own_connections=False)

    def serve(self) -> None:
        """Serve until stopped (SIGTERM, SIGINT); returns once the server has stopped."""
        self.server = _EngineServer(
            self,
            application=application,
            endpoints=build_endpoint_description_strings(host=self.host, port=self.port),
            ready_callable=self.ready,
            signal_handlers=False,
            ping_interval=20,
            ping_timeout=30,
            websocket_handshake_timeout=10,
            application_close_timeout=5,
            server_name="sched",
            websocket_max_message_size=websocket_limit(),
            websocket_max_frame_size=websocket_limit(),
        )
        self.server.run()
        log.info("sched engine stopped")

    def ready(self) -> None:
        """Called by daphne once it listens: write the engine's row (waiting for it: the
        resume grace of the workers of a killed engine counts from here), start the loops
        and take the signals."""
        self.db.submit(services.engine_register, now=timezone.now()).result(timeout=60)
        loop = asyncio.get_event_loop()
        if self.run_loops:
            self.loop_tasks.extend(loops.start(loop))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.on_signal, signum)
        self.beating = loop.create_task(_beat(self.db), name="sched-engine-heartbeat")
        log.info("sched engine listening on http://%s:%s", self.host, self.port)

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
        """Steps 1 to 4 of the SIGTERM sequence, within the grace period."""
        deadline = time.monotonic() + max(0.0, self.grace - 1.0)
        try:
            for port in self.ports:
                with contextlib.suppress(Exception):
                    port.stopListening()
            draining.start_draining()
            if self.beating is not None:
                self.beating.cancel()
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
            if self.server is not None:
                self.server.stop()


class _EngineServer(Server):  # type: ignore[misc]
    """Daphne's server, telling the engine each port it listens on (to stop listening), with
    the HTTP door of ``dispatch.httpdoor`` in front of its requests."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        self.engine = engine
        self._http_factory: GuardedHTTPFactory | None = None
        super().__init__(**kwargs)

    # ``Server.run`` makes daphne's HTTP factory; this one is made in its place.
    @property
    def http_factory(self) -> GuardedHTTPFactory | None:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: Any) -> None:
        self._http_factory = (factory if isinstance(factory, GuardedHTTPFactory)
                              else GuardedHTTPFactory(self))

    def listen_success(self, port: Any) -> None:
        self.engine.ports.append(port)
        super().listen_success(port)


async def _beat(db: DbPool) -> None:
    """Beat this engine's row while it lives; if another engine declared it dead, close
    its worker sockets (their sessions and leases are gone) so the workers reconnect."""
    every = config.get().engine_heartbeat_seconds
    while True:
        await asyncio.sleep(every)
        try:
            alive = await asyncio.wrap_future(db.submit(services.engine_beat,
                                                        now=timezone.now()))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("engine heartbeat failed; trying again", exc_info=True)
            continue
        if not alive:
            log.warning("this engine was declared dead; closing its worker sockets")
            await draining.close_all()


async def _wait_while(condition: Callable[[], object], *, until: float) -> None:
    """Poll ``condition`` until it is false or the monotonic clock passes ``until``."""
    for _ in range(int(max(0.0, until - time.monotonic()) / POLL_SECONDS) + 1):
        if not condition() or time.monotonic() >= until:
            return
        await asyncio.sleep(POLL_SECONDS)
