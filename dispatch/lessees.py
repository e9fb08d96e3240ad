"""The worker sockets this engine process serves, as lessees for a start's first task.

A start through the REST API may hand the new run's first workflow task to a worker
connected to this process, in the start's own transaction (``workflows.services.
workflow_start_handing_off``), instead of leaving it ready for the dispatcher's next tick.
``reserve`` picks a local worker serving the run's queue and type with a free workflow slot
and holds that slot; ``Reservation.settle`` then either sends the task frame once the start
has committed (to the worker's channel as the dispatcher's deliveries are, ``notify.send``:
directly, the worker being this process's) or gives the slot back. The consumer gives the
slot back when the frame reaches it (``delivered``), by which time the lease is in its own
count of held tasks: so two starts cannot both take a worker's last slot, and a frame in
transit is counted once. A frame can also be lost on the way (the channel layer went away
with it): a reserved slot therefore lapses once the lease it was taken for has timed out
(``SCHED_WORKFLOW_TASK_TIMEOUT_SECONDS``; the task is then scheduled again), so lost frames
cannot use a worker's slots up.

A worker's free slots are read from its consumer (its credit and the leases it holds), which
lives on the server's event loop while starts run in request threads: the read copies the
consumer's small dict of leases in one C-level call, and a read that fails anyway counts as
no room (the dispatcher then takes the task, as it would without this module).

Process state: ``_workers`` (worker id -> the consumer and its reserved slots), registered and
unregistered by ``dispatch.consumers`` as workers say hello and go, read by request threads;
all under ``_lock``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import transaction

from schedproject import config
from sdk import protocol
from workflows.services import Lessee

from . import draining, notify

log = logging.getLogger("sched.dispatch")
RESERVED = "reserved"  # the key of a delivery that carries reserved slots back


class LocalWorker(Protocol):
    """What this module reads of a worker consumer."""

    worker_id: str
    channel_name: str
    hello: protocol.Hello | None
    max_workflow: int
    held: dict[str, str]  # token -> task message type


@dataclass
class _Entry:
    worker: LocalWorker
    loop: asyncio.AbstractEventLoop  # the worker's consumer's; sends go out from it
    # Workflow slots taken by starts whose frame has not reached it: when each lapses
    # (monotonic), oldest first.
    reserved: list[float] = field(default_factory=list)

    def reservations(self) -> int:
        """The reserved slots that have not lapsed (dropping those that have)."""
        now = time.monotonic()
        while self.reserved and self.reserved[0] <= now:
            self.reserved.pop(0)
        return len(self.reserved)


_lock = threading.Lock()
_workers: dict[str, _Entry] = {}


def register(worker: LocalWorker) -> None:
    """A worker said hello on this process: starts may hand it new runs. Call on the
    consumer's event loop."""
    with _lock:
        _workers[worker.worker_id] = _Entry(worker, asyncio.get_running_loop())


def unregister(worker: LocalWorker) -> None:
    with _lock:
        entry = _workers.get(worker.worker_id)
        if entry is not None and entry.worker is worker:
            del _workers[worker.worker_id]


def delivered(worker: LocalWorker, event: dict[str, Any]) -> None:
    """A delivery reached the worker's consumer: the slots it reserved are counted as held."""
    n = int(event.get(RESERVED, 0))
    if n:
        _release(worker.worker_id, n)


def _release(worker_id: str, n: int) -> None:
    with _lock:
        entry = _workers.get(worker_id)
        if entry is not None:
            del entry.reserved[:n]


def _free_workflow_slots(entry: _Entry) -> int:
    worker = entry.worker
    try:
        kinds = list(worker.held.values())  # one C-level copy: no Python code runs meanwhile
    except RuntimeError:  # changed size while copied: count no room this time
        return 0
    return worker.max_workflow - kinds.count("workflow_task") - entry.reservations()


@dataclass
class Reservation:
    """One workflow slot of one local worker, held for one start."""

    lessee: Lessee
    channel_name: str
    loop: asyncio.AbstractEventLoop
    _settled: bool = False

    def settle(self, deliveries: Sequence[dict[str, Any]]) -> None:
        """After the start: send ``deliveries`` once it has committed (the slot is then
        released by the consumer, on receipt), or, with none, give the slot back now. Call
        once, whether the start succeeded or not."""
        if self._settled:
            return
        self._settled = True
        if not deliveries:
            _release(self.lessee.worker_id, 1)
            return
        messages = list(deliveries)
        transaction.on_commit(lambda: self._send(messages))

    def _send(self, messages: list[dict[str, Any]]) -> None:
        """Hand the frame to the channel layer from the consumer's event loop (a start runs
        on a database thread, which has no loop of its own to send from), without waiting."""
        event = notify.deliver_event(messages, **{RESERVED: 1})
        try:
            sent = asyncio.run_coroutine_threadsafe(self._deliver(event), self.loop)
        except RuntimeError:  # the loop has closed: the process is going away
            self._lost(None)
            return
        sent.add_done_callback(lambda done: self._lost(done.exception())
                               if not done.cancelled() and done.exception() else None)

    async def _deliver(self, event: dict[str, Any]) -> None:
        await notify.send(self.channel_name, event)

    def _lost(self, exc: BaseException | None) -> None:
        # The lease stands and times out (WorkflowTaskTimedOut), then the task is scheduled
        # again: the same as a dispatcher delivery the channel layer lost.
        log.warning("could not send a started run's first task to worker %s",
                    self.lessee.worker_id, exc_info=exc)
        _release(self.lessee.worker_id, 1)


def reserve(*, task_queue: str, workflow_type: str) -> Reservation | None:
    """A local worker serving ``task_queue`` and ``workflow_type`` with a free workflow slot,
    that slot held until ``Reservation.settle``; None if there is none (or this process is
    draining)."""
    if draining.active or not _workers:
        return None
    with _lock:
        best: tuple[int, _Entry] | None = None
        for entry in _workers.values():
            hello = entry.worker.hello
            if (hello is None or hello.task_queue != task_queue
                    or workflow_type not in hello.workflow_types):
                continue
            free = _free_workflow_slots(entry)
            if free > 0 and (best is None or free > best[0]):
                best = (free, entry)
        if best is None:
            return None
        entry = best[1]
        cfg = config.get()
        entry.reserved.append(time.monotonic() + cfg.workflow_task_timeout_seconds)
        worker = entry.worker
    assert worker.hello is not None
    return Reservation(
        Lessee(worker.worker_id, task_queue, frozenset(worker.hello.workflow_types),
               frozenset(worker.hello.activity_types), 1, 0, cfg.lease_timeout_seconds,
               cfg.workflow_task_timeout_seconds),
        worker.channel_name, entry.loop)
