"""Workflow activations run off the worker's event loop, each in a thread, watched for deadlocks.

Design (as temporalio/sdk-python runs workflows in a thread pool with a deadlock timeout):

* The worker's event loop carries the websocket: frames in, completions out, pings, activity
  results. Workflow code runs on a workflow's own deterministic loop (``sdk._runtime``), and
  that loop runs on a thread of its own for each activation (``run_activation``; a thread of
  a small pool, see below), so code that blocks (``time.sleep``, a lock, a busy loop) holds
  its thread, never the worker: the worker goes on serving its other workflows and
  activities.
* Deadlock detection. The runtime stamps the start of every step of the workflow code
  (``WorkflowInstance.busy_since``); the worker's loop watches it while the thread runs. A
  step that has not yielded within ``deadlock_timeout`` seconds is a deadlock: ``run_activation``
  returns a ``Deadlock`` naming the file and line where the thread is (its Python stack, read
  with ``sys._current_frames``), and the worker fails the workflow task with cause
  ``deadlock_detected`` and drops the instance. A step is measured, not the activation: a long
  replay of many short steps is not a deadlock.
* Python cannot stop a thread. A deadlocked one is abandoned: it runs on until it returns
  (its instance is dropped, so what it does is thrown away). A workflow that never yields
  costs a thread for each retry of its task, which the engine's back-off (doubling up to
  30 s) keeps few.
* The threads are a small pool of its own (``_Threads``): a thread is started when no idle
  one is waiting, so an abandoned thread is replaced by the next activation that needs one,
  and idle threads end after a minute. Daemon threads, so a stuck one never holds the
  process at exit (``concurrent.futures``' pool joins its threads at exit, and cannot replace
  a stuck one). Rejected: a new thread per activation (starting one costs about as much as a
  short activation).
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from sdk._errors import failure_from_exception
from sdk._runtime import ActivationResult, WorkflowInstance
from sdk.protocol import WireFailure

__all__ = ["DEFAULT_DEADLOCK_TIMEOUT", "Deadlock", "run_activation"]

DEFAULT_DEADLOCK_TIMEOUT = 2.0


def _folders(*paths: str) -> tuple[str, ...]:
    return tuple(os.path.abspath(p) + os.sep for p in set(paths))


_PATHS = sysconfig.get_paths()
# Where workflow code blocked is the innermost frame of the user's own code: not in the
# standard library or the SDK, and, where some frame is not, in no installed package either.
_NOT_USER_CODE = _folders(_PATHS["stdlib"], _PATHS["platstdlib"],
                          os.path.dirname(os.path.abspath(__file__)))
_INSTALLED = _folders(_PATHS["purelib"], _PATHS["platlib"])


@dataclass(frozen=True, slots=True)
class Deadlock:
    """Workflow code that did not yield for ``seconds``: where its thread was, and its stack."""

    seconds: float
    location: str  # "path/to/flows.py:42 in charge", or "unknown" if the thread was gone
    stack: str

    def failure(self, workflow_type: str, workflow_id: str) -> WireFailure:
        """The failure the workflow task fails with (cause ``deadlock_detected``)."""
        message = (f"potential deadlock detected: workflow {workflow_type!r} "
                   f"({workflow_id}) did not yield for {self.seconds:g} s; blocked at "
                   f"{self.location}")
        return {"type": "DeadlockError", "message": message, "stack": self.stack,
                "details": {"location": self.location, "timeout_seconds": self.seconds},
                "non_retryable": False}


def _user_frame(frame: FrameType) -> FrameType:
    """The innermost frame of ``frame``'s stack in the user's code (else ``frame``)."""
    for skip in (_NOT_USER_CODE + _INSTALLED, _NOT_USER_CODE):
        current: FrameType | None = frame
        while current is not None:
            filename = current.f_code.co_filename
            if not filename.startswith("<") and not os.path.abspath(filename).startswith(skip):
                return current
            current = current.f_back
    return frame


def _deadlock(thread_id: int | None, seconds: float) -> Deadlock:
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    if frame is None:
        return Deadlock(seconds, "unknown", "")
    stack = "".join(traceback.format_stack(frame))
    where = _user_frame(frame)
    location = f"{where.f_code.co_filename}:{where.f_lineno} in {where.f_code.co_name}"
    return Deadlock(seconds, location, stack)


class _Threads:
    """Daemon threads that run jobs; a new one starts when none is idle, an idle one ends
    after ``idle_seconds``. Invariant (under ``_lock``): ``_idle`` is the number of threads
    waiting for a job minus the number of jobs queued."""

    def __init__(self, idle_seconds: float = 60.0, name: str = "sched-workflow") -> None:
        self._idle_seconds = idle_seconds
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._jobs.put(job)
                return
        threading.Thread(target=self._serve, args=(job,), name=self._name, daemon=True).start()

    def _serve(self, job: Callable[[], None]) -> None:
        while True:
            job()
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    try:  # a job queued while the wait ended is this thread's
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return


_THREADS = _Threads()


def _settle(future: asyncio.Future[ActivationResult], result: ActivationResult) -> None:
    if not future.done():
        future.set_result(result)


async def run_activation(
    run: Callable[[], ActivationResult], instance: WorkflowInstance, *,
    deadlock_timeout: float | None,
) -> ActivationResult | Deadlock:
    """Run ``run`` (an activation of ``instance``) in a thread of its own and wait for its
    result, or for a step of the workflow code to go ``deadlock_timeout`` seconds without
    yielding (None: no limit). Never raises for what the activation does."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ActivationResult] = loop.create_future()
    thread_id: list[int] = []

    def target() -> None:
        thread_id.append(threading.get_ident())
        try:
            result = run()
        except BaseException as exc:  # activate() never raises; a thread must not either
            result = ActivationResult(failure=failure_from_exception(exc), cause="worker_error")
        try:
            loop.call_soon_threadsafe(_settle, future, result)
        except RuntimeError:  # the worker's loop is closed: nobody waits any more
            pass

    _THREADS.submit(target)
    limit = deadlock_timeout
    if limit is None:
        return await future
    while not future.done():
        since = instance.busy_since
        now = time.monotonic()
        if since is not None and now - since >= limit:
            return _deadlock(thread_id[0] if thread_id else None, limit)
        wait = limit if since is None else since + limit - now
        await asyncio.wait({future}, timeout=wait)
    return future.result()

