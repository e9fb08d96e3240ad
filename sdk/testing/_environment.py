"""``WorkflowEnvironment``: an engine of the test's own, with or without time skipping.

Modelled on Temporal's Python test kit::

    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with env.worker(task_queue="q", workflows=[reminder], activities=[notify]):
            handle = await env.client.start_workflow(reminder, "ann", task_queue="q")
            assert await handle.result() == ...   # a 30-day sleep returns at once

The engine is sched's own (``dispatch.testengine``), in a child process on a SQLite file of
its own (see ``sdk.testing._engine`` for why a process). With time skipping its clock jumps
to the next timer whenever nothing else is pending and a client waits for a result (or
``env.sleep`` asks for time to pass): ``timers.skipping`` says exactly when. Everything
works from sync code too (``start_time_skipping_sync()``, ``with env.worker(...)``, which
runs the worker on a thread of its own, and ``env.sync_client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any

from sdk._client import AsyncClient, Client
from sdk._worker import Worker

from ._engine import EngineExited, EngineProcess

__all__ = ["EnvironmentWorker", "WorkflowEnvironment"]

WORKER_CONNECT_TIMEOUT = 30.0
WORKER_STOP_GRACE = 10.0


class WorkflowEnvironment:
    """A running test engine: ``client``/``sync_client``, ``worker(...)``, ``sleep``.

    Start one with ``await WorkflowEnvironment.start_time_skipping()`` or
    ``await WorkflowEnvironment.start_local()`` (``..._sync()`` from sync code), and stop it
    with ``async with`` / ``with`` or ``shutdown()`` / ``close()``."""

    def __init__(self, engine: EngineProcess) -> None:
        self._engine = engine
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
            weakref.WeakKeyDictionary())
        self._sync_client: Client | None = None
        self._auto_off = 0
        self._auto_lock = threading.Lock()

    # ---- starting --------------------------------------------------------------------------

    @classmethod
    async def start_time_skipping(cls, *, env: dict[str, str] | None = None,
                                  data_dir: str | os.PathLike[str] | None = None
                                  ) -> WorkflowEnvironment:
        """An engine whose clock skips ahead to the next timer while nothing else is pending
        and a client waits for a result. ``env``: extra ``SCHED_*`` settings for the engine;
        ``data_dir``: keep its database and log there (a new temporary folder by default,
        removed at the end)."""
        return await asyncio.to_thread(cls.start_time_skipping_sync, env=env,
                                       data_dir=data_dir)

    @classmethod
    async def start_local(cls, *, env: dict[str, str] | None = None,
                          data_dir: str | os.PathLike[str] | None = None
                          ) -> WorkflowEnvironment:
        """An engine on wall time, like a real one (``env.sleep`` really sleeps)."""
        return await asyncio.to_thread(cls.start_local_sync, env=env, data_dir=data_dir)

    @classmethod
    def start_time_skipping_sync(cls, *, env: dict[str, str] | None = None,
                                 data_dir: str | os.PathLike[str] | None = None
                                 ) -> WorkflowEnvironment:
        return cls(EngineProcess.start(time_skipping=True, env=env, data_dir=data_dir))

    @classmethod
    def start_local_sync(cls, *, env: dict[str, str] | None = None,
                         data_dir: str | os.PathLike[str] | None = None) -> WorkflowEnvironment:
        return cls(EngineProcess.start(time_skipping=False, env=env, data_dir=data_dir))

    # ---- what a test uses ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The engine's base URL (``http://127.0.0.1:<port>``), for ``sdk.Client``/``Worker``."""
        return self._engine.url

    @property
    def token(self) -> str:
        """An admin token of the engine (good for clients and workers)."""
        return self._engine.token

    @property
    def supports_time_skipping(self) -> bool:
        return self._engine.time_skipping

    @property
    def log_path(self) -> str:
        """The engine's log (kept until the environment stops)."""
        return str(self._engine.log_path)

    @property
    def client(self) -> AsyncClient:
        """An ``sdk.AsyncClient`` of this engine, one per event loop (an httpx client belongs
        to the loop it first ran on)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("env.client is an sdk.AsyncClient, for async code; "
                               "sync code uses env.sync_client") from None
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = AsyncClient(self.url, token=self.token)
        return client

    @property
    def sync_client(self) -> Client:
        """An ``sdk.Client`` of this engine, for sync code."""
        if self._sync_client is None:
            self._sync_client = Client(self.url, token=self.token)
        return self._sync_client

    def worker(self, *, task_queue: str = "default", workflows: Iterable[Any] = (),
               activities: Iterable[Any] = (), **options: Any) -> EnvironmentWorker:
        """An ``sdk.Worker`` of this engine, run for the duration of ``async with`` (on the
        running loop) or ``with`` (on a thread of its own). ``options``: the rest of
        ``sdk.Worker``'s keyword arguments."""
        return EnvironmentWorker(Worker(self.url, token=self.token, task_queue=task_queue,
                                        workflows=workflows, activities=activities,
                                        **options))

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass on the engine's clock: with time skipping, at once where
        nothing is pending (every timer due on the way fires, in order, and what it causes
        runs); otherwise in real time."""
        await asyncio.wrap_future(self._engine.request("sleep", seconds=float(seconds)))

    def sleep_sync(self, seconds: float) -> None:
        self._engine.request("sleep", seconds=float(seconds)).result()

    async def get_current_time(self) -> datetime:
        """The engine's time (what it stamps events with)."""
        answer = await asyncio.wrap_future(self._engine.request("now"))
        return datetime.fromisoformat(str(answer["now"]))

    def current_time(self) -> datetime:
        return datetime.fromisoformat(str(self._engine.request("now").result()["now"]))

    @contextlib.contextmanager
    def auto_time_skipping_disabled(self) -> Iterator[None]:
        """Within the block, waiting for a result does not skip time (``sleep`` still does)."""
        self._set_auto(+1)
        try:
            yield
        finally:
            self._set_auto(-1)

    def _set_auto(self, change: int) -> None:
        with self._auto_lock:
            self._auto_off += change
            enabled = self._auto_off == 0
            if (change > 0 and self._auto_off == 1) or enabled:
                self._engine.request("auto", enabled=enabled).result(timeout=30)

    # ---- stopping --------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop the engine and remove its folder (unless ``data_dir`` was given)."""
        try:
            loop = asyncio.get_running_loop()
            client = self._clients.pop(loop, None)
            if client is not None:
                await client.aclose()
        finally:
            await asyncio.to_thread(self.close)

    def close(self) -> None:
        """``shutdown()`` for sync code."""
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None
        self._clients.clear()
        self._engine.stop()

    async def __aenter__(self) -> WorkflowEnvironment:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def __enter__(self) -> WorkflowEnvironment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EnvironmentWorker:
    """A worker running for the duration of a block (``WorkflowEnvironment.worker``). Entering
    returns once the worker is connected, so the engine knows what it serves."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    # ---- async with: on the running loop ---------------------------------------------------

    async def __aenter__(self) -> Worker:
        self._task = task = asyncio.create_task(self.worker.run(), name="sched-test-worker")
        try:
            async with asyncio.timeout(WORKER_CONNECT_TIMEOUT):
                while self.worker.worker_id is None:
                    if task.done():
                        task.result()  # raises the worker's error
                        raise EngineExited("the worker stopped before it connected", "")
                    await asyncio.sleep(0.01)
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        return self.worker

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._task is not None
        try:
            await self.worker.shutdown(grace=WORKER_STOP_GRACE)
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ---- with: on a thread of its own ------------------------------------------------------

    def __enter__(self) -> Worker:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,),
                                        name="sched-test-worker", daemon=True)
        self._thread.start()
        if not started.wait(WORKER_CONNECT_TIMEOUT) or self._failure is not None:
            self.__exit__(None, None, None)
            if self._failure is not None:
                raise self._failure
            raise TimeoutError(f"the worker did not connect within {WORKER_CONNECT_TIMEOUT:g} s")
        return self.worker

    def _serve(self, started: threading.Event) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            async with self:
                started.set()
                await self._task_done()

        try:
            asyncio.run(serve())
        except BaseException as exc:  # handed to the test's thread
            self._failure = exc
        finally:
            started.set()

    async def _task_done(self) -> None:
        assert self._task is not None
        await asyncio.shield(self._task)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed() and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                asyncio.run_coroutine_threadsafe(self.worker.shutdown(grace=WORKER_STOP_GRACE),
                                                 loop).result(timeout=WORKER_STOP_GRACE + 10)
        if thread is not None:
            thread.join(timeout=WORKER_STOP_GRACE + 10)
        failure, self._failure = self._failure, None
        if failure is not None and exc is None and not isinstance(failure, asyncio.CancelledError):
            raise failure

