"""The test engine: a whole engine in a process of its own, for ``sdk.testing``.

``python -m dispatch.testengine --control-fd N [--time-skipping]`` (started by
``sdk.testing.WorkflowEnvironment``, never by hand) migrates a fresh SQLite database in
``SCHED_DATA_DIR``, issues an admin token, and serves the engine (``dispatch.lifecycle
.Engine``: REST API, worker socket, dispatcher, timer manager, dashboard) on a free port of
127.0.0.1. It is the engine's own code; what differs:

- with ``--time-skipping``, the process's clock is ``timers.clock.SkewedClock`` (installed
  before Django loads) and a ``timers.skipping.TimeSkipper`` moves it forward;
- worker leases last a century: the clock jumps, and a worker must not look silent for it
  (``timers.skipping``); a worker that goes away closes its socket, which hands its tasks
  back all the same.

Why a process and not a thread of the test's own: the engine is a Django project, and a
user's test process may be a Django project of its own (its settings, its database), or no
Django at all. A process of its own gets sched's settings, a database file nobody else
uses, and a clock it may skew, whatever the test process is; and it dies with its parent.

Control, one JSON object a line. In on stdin: ``{"id": 1, "op": "now"}``, ``{"id": 2, "op":
"sleep", "seconds": 30}``, ``{"id": 3, "op": "auto", "enabled": false}``, ``{"op": "stop"}``.
Out on the file descriptor ``--control-fd``: first ``{"op": "ready", "url": ..., "token":
..., "time_skipping": ...}``, then one answer per request, ``{"id": 1, "now": "<ISO>"}`` (a
sleep is answered once the clock has reached its target). The end of stdin (the test process
went away) shuts the engine down, like SIGTERM. Stdout and stderr are the engine's log.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import signal
import sys
import threading
from concurrent.futures import Future
from datetime import datetime
from typing import IO, Any

# The process's own settings, whatever the environment it was started from held.
os.environ["DJANGO_SETTINGS_MODULE"] = "schedproject.settings"

LEASE_SECONDS = 100 * 365 * 86400


class Control:
    """The control channel: requests from stdin, answers on ``out``, on the engine's loop."""

    def __init__(self, out: IO[str], skipper: Any | None) -> None:
        self.out = out
        self.skipper = skipper
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: Any = None
        self._write = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._write:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()

    def start(self, loop: asyncio.AbstractEventLoop, stop: Any) -> None:
        self.loop, self.stop = loop, stop
        threading.Thread(target=self._read, name="sched-test-control", daemon=True).start()

    def _read(self) -> None:
        assert self.loop is not None
        for line in sys.stdin:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if request.get("op") == "stop":
                break
            future = asyncio.run_coroutine_threadsafe(self.handle(request), self.loop)
            future.add_done_callback(functools.partial(self._answer, request.get("id")))
        self.loop.call_soon_threadsafe(self.stop, signal.SIGTERM)

    def _answer(self, request_id: Any, future: Future[dict[str, Any]]) -> None:
        exc = future.exception()
        answer = {"error": repr(exc)} if exc is not None else future.result()
        self.send({"id": request_id, **answer})

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        from django.utils import timezone

        op = request.get("op")
        if op == "sleep":
            seconds = float(request["seconds"])
            if self.skipper is not None:
                return {"now": _iso(await self.skipper.sleep(seconds))}
            await asyncio.sleep(seconds)
        elif op == "auto":
            if self.skipper is not None:
                self.skipper.auto = bool(request["enabled"])
        elif op != "now":
            return {"error": f"unknown op {op!r}"}
        return {"now": _iso(timezone.now())}


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dispatch.testengine")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--time-skipping", action="store_true")
    parser.add_argument("--remove-data-dir", action="store_true",
                        help="remove SCHED_DATA_DIR on the way out (a temporary folder)")
    args = parser.parse_args(argv)
    out = os.fdopen(args.control_fd, "w", buffering=1)
    os.environ.pop("DATABASE_URL", None)  # SQLite in SCHED_DATA_DIR
    os.environ.pop("REDIS_URL", None)     # the in-memory channel layer
    os.environ["SCHED_LEASE_TIMEOUT_SECONDS"] = str(LEASE_SECONDS)
    clock = None
    if args.time_skipping:
        from timers.clock import install

        clock = install()

    import django

    django.setup()
    from django.core.management import call_command

    from schedproject import config
    from timers.skipping import TimeSkipper
    from workflows.models import ApiToken

    from .lifecycle import Engine

    call_command("migrate", verbosity=0, interactive=False)
    _, token = ApiToken.issue("sdk.testing")
    skipper = TimeSkipper(clock) if clock is not None else None
    control = Control(out, skipper)

    def cleanup() -> None:
        if args.remove_data_dir:  # also when the test process went away without a word
            shutil.rmtree(config.get().data_dir, ignore_errors=True)

    class TestEngine(Engine):
        def ready(self) -> None:
            assert self.server is not None
            host, self.port = self.server.listening_addresses[0]  # port 0: the one it took
            super().ready()
            loop = asyncio.get_event_loop()
            if skipper is not None:
                self.loop_tasks.append(loop.create_task(skipper.run(), name="sched-skipper"))
            control.start(loop, self.on_signal)
            control.send({"op": "ready", "url": f"http://{host}:{self.port}", "token": token,
                          "time_skipping": skipper is not None})

        @staticmethod
        def _exit_now() -> None:  # the shutdown's grace ran out
            cleanup()
            Engine._exit_now()

    try:
        TestEngine(host="127.0.0.1", port=0, run_loops=True,
                   grace=config.get().shutdown_grace_seconds).serve()
    finally:
        cleanup()


if __name__ == "__main__":
    main()
