"""The session keeper: liveness, token revocation and flow control of this engine's worker
sockets, off the sockets' own database lanes.

A worker's pings used to go through its socket's lane to the database (mark the session
seen, extend its activity leases), so under a burst of starts a ping waited behind the same
threads as every completion, for seconds, and the leader declared a healthy worker silent.
Now a ping is answered at once, with no database work, and the socket only notes when it
last heard from its worker. Every ``KEEP_SECONDS`` the keeper of each engine process makes
one round trip on a thread of its own (``sessions_keep``) for all its sockets together:

- liveness: each session's ``last_seen_at`` becomes the time its worker was last heard from
  (a socket in the middle of handling a frame counts as heard now), so a worker is declared
  silent by the leader only for its own silence, never for the engine's backlog;
- leases: the activity leases whose frames reached the socket (the tokens the socket holds)
  are kept for a lease timeout from then. A lease whose frame was lost on the way (a channel
  layer that went away with the frame in it) is not kept by the worker's pings: it runs out
  and the task goes back to the queue;
- sessions dropped: a socket whose session is gone (the leader dropped it as silent and
  handed its tasks back) is closed with ``CLOSE_SESSION_LOST``, and its worker reconnects;
- revocation: a socket whose token has been revoked (or deleted), by any process (the
  admin, ``manage.py revoketoken``), is sent an error frame ``token_revoked`` and closed with
  4401. The check reads the token table itself, so it holds on every engine whatever the
  channel layer (the in-memory layer reaches one process only).

Flow control, in the same round (no database work but a credit write on the socket's own
lane when it changes): a socket whose unsent bytes in the server's buffer exceed
``SCHED_SEND_BUFFER_PAUSE_BYTES`` gets no new task (its credit reads zero, here and in its
session row, which the dispatcher reads), and one past ``SCHED_SEND_BUFFER_CLOSE_BYTES`` is
dropped at once (its buffer discarded; its disconnect hands its leases back). A socket that
was sent tasks and made no progress (no completion, failure or heartbeat) within a lease
timeout of the oldest it holds is stalled: it gets no new task either, until it makes some.

Process state, on the server's event loop: ``_sockets`` (added by the consumer on connect,
discarded at disconnect) and the keeper's task, started with the first socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from schedproject import config
from schedproject.dbthread import DbThread

from . import services

log = logging.getLogger("sched.worker_socket")
KEEP_SECONDS = 0.5
CLOSE_SESSION_LOST = 4408


class KeptSocket(Protocol):
    """What the keeper reads of a worker consumer, and asks of it."""

    token_id: int

    def heard(self) -> services.Heard | None:
        """The socket's liveness since the last round; None before its hello."""

    def review_flow(self, now: float) -> None:
        """Re-check the socket's send buffer and progress (``now`` is monotonic)."""

    async def revoked(self) -> None: ...

    async def session_lost(self) -> None: ...


_sockets: weakref.WeakSet[Any] = weakref.WeakSet()
_task: asyncio.Task[None] | None = None
_db: DbThread | None = None


def add(socket: KeptSocket) -> None:
    """Keep ``socket`` from now on; starts the keeper on the running loop if needed."""
    global _task
    _sockets.add(socket)
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_run(), name="sched-session-keeper")


def discard(socket: KeptSocket) -> None:
    _sockets.discard(socket)


async def _run() -> None:
    global _db
    if _db is None:
        _db = DbThread("keeper")
    failing = False
    while True:
        await asyncio.sleep(KEEP_SECONDS)
        try:
            await keep_once(_db)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database is away: try again next round (said once)
            if not failing:
                log.warning("session keeper: a round failed; retrying", exc_info=True)
            failing = True
        else:
            failing = False


async def keep_once(db: DbThread) -> None:
    """One round for every socket of this process (see the module's docstring)."""
    sockets: list[KeptSocket] = list(_sockets)
    if not sockets:
        return
    now = time.monotonic()
    for socket in sockets:
        socket.review_flow(now)
    heard = {id(s): s.heard() for s in sockets}
    kept = await db.run(services.sessions_keep,
                        heard=[h for h in heard.values() if h is not None],
                        token_ids={s.token_id for s in sockets})
    for socket in sockets:
        if socket not in _sockets:
            continue  # it went away meanwhile
        one = heard[id(socket)]
        if socket.token_id not in kept.live_tokens:
            await _quietly(socket.revoked)
        elif one is not None and one.worker_id not in kept.present:
            await _quietly(socket.session_lost)


async def _quietly(close: Callable[[], Any]) -> None:
    try:
        await close()
    except Exception:
        log.warning("session keeper: could not close a socket", exc_info=True)


def send_buffer_bytes(send: Any) -> int | None:
    """The bytes the server holds unsent for the socket whose ASGI ``send`` this is, or None
    if that cannot be told (not daphne, or a transport of another kind).

    Daphne gives each connection ``functools.partial(server.handle_reply, protocol)`` as its
    ``send``; the protocol's Twisted transport keeps what the peer has not read yet in
    ``dataBuffer`` (from ``offset``) and ``_tempDataBuffer`` (``_tempDataLen`` bytes)."""
    args = getattr(send, "args", ())
    transport = getattr(args[0], "transport", None) if args else None
    if transport is None:
        return None
    try:
        return (len(transport.dataBuffer) - int(transport.offset)
                + int(transport._tempDataLen))
    except (AttributeError, TypeError):
        return None


def drop_connection(send: Any) -> bool:
    """Drop the socket's connection at once, discarding what is buffered for it (a close
    frame would wait behind that buffer). False if that cannot be done here."""
    args = getattr(send, "args", ())
    protocol = args[0] if args else None
    drop = getattr(protocol, "dropConnection", None)
    if drop is None:
        return False
    drop(abort=True)
    return True


def limits() -> tuple[int, int]:
    """(pause, close) bounds of a socket's send buffer, in bytes."""
    cfg = config.get()
    return cfg.send_buffer_pause_bytes, max(cfg.send_buffer_close_bytes,
                                            cfg.send_buffer_pause_bytes)


