"""Loaded by a measured process (its folder is put on PYTHONPATH by the bench).

Gives each Python thread its name as the OS thread name (``/proc/<pid>/task/<tid>/comm``,
15 characters) and, when ``SCHED_BENCH_THREAD_LOG`` is set, appends one line per thread
start and exit to that file (tid, full name, and at exit the thread's CPU seconds), so the
bench can attribute the CPU of threads that lived only inside a measured window.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from typing import Any

_LOG = os.environ.get("SCHED_BENCH_THREAD_LOG")
_PR_SET_NAME = 15

try:
    _libc: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def _write(line: str) -> None:
    if _LOG:
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode(errors="replace"))
        finally:
            os.close(fd)


_original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]


def _bootstrap_inner(self: threading.Thread) -> None:
    name = self.name.replace("\t", " ").replace("\n", " ")
    tid = threading.get_native_id()
    if _libc is not None:
        _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    _write(f"start\t{tid}\t{name}\n")
    try:
        _original(self)
    finally:
        _write(f"exit\t{tid}\t{name}\t{time.thread_time():.6f}\n")


threading.Thread._bootstrap_inner = _bootstrap_inner  # type: ignore[attr-defined]
