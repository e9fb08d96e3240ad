"""What happened to runs, told after commit: long-poll wake-ups and observers.

Every transaction that writes a run's events calls ``on_commit(execution, events)``; every
lease of a task calls ``on_commit_lease(...)``. Once the transaction commits:

- requests long-polling that run in this process (its result, its new history events) are
  woken: a waiter registers on one execution id (``watch``) and only a commit of that run
  sets it (for a result, only the commit that closes the run), so a waiting request
  re-reads its run when the run changed as it waits for, not on every commit here;
- changes committed by another engine process are seen by one poller per process
  (``_poll_remote``), not by each waiter: while anyone waits, it reads the status and the
  next event id of every watched run in one statement each ``REMOTE_POLL_SECONDS``, and
  wakes the waiters of the runs that changed since its last read (and, once, each waiter
  new since then, which may have read the run before the poller's first look at it). So
  300 waiters cost the database one small read per interval, not 300;
- observers registered with ``subscribe`` / ``subscribe_leases`` (metrics, say) are called
  with what was committed. An observer's failure is logged and never reaches the caller.

Process state: the waiters by execution id (``_watches``, added and removed by the long
polls, set by commits here and by the poller, under ``_watch_lock``), the poller's thread and
what it last read (``_seen``, its own), and the observer lists, subscribed once
at start (``schedproject.metrics.install``, from ``WorkflowsConfig.ready``) and only read
afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from django.db import close_old_connections, connection, transaction

from workflows.core.events import Event
from workflows.core.state import Status
from workflows.models import Execution

log = logging.getLogger("sched.changes")


@dataclass(frozen=True)
class Lease:
    kind: str            # "workflow" or "activity"
    task_queue: str
    type_name: str
    attempt: int
    waited_seconds: float  # from the task becoming ready to this lease


TransitionObserver = Callable[["Execution", Sequence[Event]], None]
LeaseObserver = Callable[[Sequence[Lease]], None]

_watch_lock = threading.Lock()
_watches: dict[int, set[Watch]] = {}
_transition_observers: list[TransitionObserver] = []
_lease_observers: list[LeaseObserver] = []


def subscribe(observer: TransitionObserver) -> None:
    _transition_observers.append(observer)


def subscribe_leases(observer: LeaseObserver) -> None:
    _lease_observers.append(observer)


class Watch:
    """One waiter on one run: set by a commit of that run in this process, or by the poller
    seeing another process's (with ``closing_only``, only by the commit that closes it)."""

    __slots__ = ("_event", "closing_only", "execution_id", "polled")

    def __init__(self, execution_id: int, *, closing_only: bool = False) -> None:
        self.execution_id = execution_id
        self.closing_only = closing_only
        self.polled = False  # the poller has looked at the run since this watch began
        self._event = threading.Event()

    def clear(self) -> None:
        """Forget past commits: call before reading the run, so a commit after the read is
        not missed."""
        self._event.clear()

    def wait(self, timeout: float) -> bool:
        """Wait until the run's next commit (or since ``clear``), or ``timeout`` seconds.
        Whether a commit of the run woke it."""
        return self._event.wait(timeout=timeout)

    def _set(self) -> None:
        self._event.set()


class AsyncWatch(Watch):
    """A ``Watch`` awaited on an event loop (no thread waits): a commit, on whatever thread,
    wakes it through the loop."""

    __slots__ = ("_loop", "_woken")

    def __init__(self, execution_id: int, *, closing_only: bool = False) -> None:
        super().__init__(execution_id, closing_only=closing_only)
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()

    def clear(self) -> None:
        self._woken.clear()

    async def wait_async(self, timeout: float) -> bool:  # noqa: ASYNC109 (= Watch.wait)
        try:
            async with asyncio.timeout(timeout):
                await self._woken.wait()
        except TimeoutError:
            return False
        return True

    def _set(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._woken.set)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass


@contextmanager
def watch(execution_id: int, *, closing_only: bool = False) -> Iterator[Watch]:
    """Wait on one run's commits in this process for the duration of the block; with
    ``closing_only``, on the commit that closes the run (what a result waits for)."""
    with _watching(Watch(execution_id, closing_only=closing_only)) as w:
        yield w


@contextmanager
def watch_async(execution_id: int, *, closing_only: bool = False) -> Iterator[AsyncWatch]:
    """``watch`` for a coroutine on the running event loop: ``await w.wait_async(t)``."""
    with _watching(AsyncWatch(execution_id, closing_only=closing_only)) as w:
        yield w


W = TypeVar("W", bound=Watch)


@contextmanager
def _watching(w: W) -> Iterator[W]:
    execution_id = w.execution_id
    with _watch_lock:
        _watches.setdefault(execution_id, set()).add(w)
        _start_poller()
    try:
        yield w
    finally:
        with _watch_lock:
            waiters = _watches.get(execution_id)
            if waiters is not None:
                waiters.discard(w)
                if not waiters:
                    del _watches[execution_id]


def watched() -> dict[int, int]:
    """How many waiters each watched run has (for tests and the curious)."""
    with _watch_lock:
        return {execution_id: len(ws) for execution_id, ws in _watches.items()}


def closing_waiters() -> int:
    """How many requests in this process wait for a run to close (result long polls): a
    time-skipping test engine skips time only while a client waits so (``timers.skipping``)."""
    with _watch_lock:
        return sum(w.closing_only for ws in _watches.values() for w in ws)


def _notify(execution_id: int, *, closed: bool) -> None:
    with _watch_lock:
        waiters = _watches.get(execution_id)
        if not waiters:
            return
        woken = [w for w in waiters if closed or not w.closing_only]
    for w in woken:
        w._set()


# ---- another process's commits: one poller for all the waiters ------------------------------

REMOTE_POLL_SECONDS = 0.25
remote_polling = True  # off: only this process's commits wake waiters (tests of those)
_poller: threading.Thread | None = None
_poller_wake = threading.Condition(_watch_lock)
_seen: dict[int, tuple[str, int]] = {}  # execution id -> (status, next_event_id) last read
polls = 0  # rounds that read the database (for tests)


def _start_poller() -> None:
    """Start the poller if it is not running (under ``_watch_lock``)."""
    global _poller
    if _poller is None or not _poller.is_alive():
        _poller = threading.Thread(target=_poll_remote, name="sched-watch-poller", daemon=True)
        _poller.start()
    else:
        _poller_wake.notify()


def _poll_remote() -> None:
    global polls
    failing = False
    while True:
        with _watch_lock:
            while not _watches or not remote_polling:
                _seen.clear()
                _poller_wake.wait(timeout=None if remote_polling else REMOTE_POLL_SECONDS)
            ids = list(_watches)
        try:
            rows = _read_versions(ids)
        except Exception:  # the database is away: waiters still wake on local commits
            if not failing:
                log.warning("watch poller: a round failed; retrying", exc_info=True)
            failing = True
            time.sleep(REMOTE_POLL_SECONDS)
            continue
        failing = False
        polls += 1
        woken: list[Watch] = []
        with _watch_lock:
            for execution_id in ids:
                version = rows.get(execution_id)
                before = _seen.get(execution_id)
                changed = version is not None and before is not None and version != before
                closed = version is not None and version[0] != Status.RUNNING.value
                if version is not None:
                    _seen[execution_id] = version
                for w in _watches.get(execution_id, ()):
                    if not w.polled or (changed and (closed or not w.closing_only)):
                        woken.append(w)
                    w.polled = True
            for execution_id in [k for k in _seen if k not in _watches]:
                del _seen[execution_id]
        for w in woken:
            w._set()
        time.sleep(REMOTE_POLL_SECONDS)


def _read_versions(ids: list[int]) -> dict[int, tuple[str, int]]:
    """(status, next_event_id) of each run, as last committed; in one statement, on this
    thread's connection, given back to the pool before the next round."""
    try:
        return {pk: (status, next_event_id) for pk, status, next_event_id in
                Execution.objects.filter(pk__in=ids).values_list(
                    "pk", "status", "next_event_id")}
    finally:
        if connection.vendor != "sqlite":
            connection.close()
        else:
            close_old_connections()


def on_commit(execution: Execution, events: Sequence[Event]) -> None:
    """Call with the run's snapshot saved (its ``status`` as this transaction leaves it)."""
    execution_id = execution.pk
    closed = execution.status != Status.RUNNING.value

    def committed() -> None:
        _notify(execution_id, closed=closed)
        for observer in _transition_observers:
            try:
                observer(execution, events)
            except Exception:
                log.exception("transition observer %r failed", observer)

    transaction.on_commit(committed)


def on_commit_lease(leases: Sequence[Lease]) -> None:
    if not _lease_observers or not leases:
        return

    def committed() -> None:
        for observer in _lease_observers:
            try:
                observer(leases)
            except Exception:
                log.exception("lease observer %r failed", observer)

    transaction.on_commit(committed)
