"""CPU time of processes and threads from /proc (Linux), stdlib only.

A process's figure is its own user+system time plus that of the children it has reaped
(``cutime``/``cstime``) plus its live descendants', so the difference of two readings counts
every tick spent in the window, also by children that started or exited inside it (a
PostgreSQL backend that lived for one request is reaped by the postmaster). Threads are read
from ``/proc/<pid>/task``; threads that exit inside the window are accounted from the log
written by ``threadnames/sitecustomize.py`` in the measured process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

TICK = float(os.sysconf("SC_CLK_TCK"))


def _fields(stat: str) -> list[str]:
    # "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    return stat[stat.rindex(")") + 2:].split()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def own_ticks(pid: int, *, reaped: bool = True) -> int:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return 0
    f = _fields(stat)  # f[11..14] = utime stime cutime cstime
    return int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if reaped else 0)


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat is not None:
                kids.setdefault(int(_fields(stat)[1]), []).append(int(entry))
    return kids


def family_seconds(pid: int, kids: dict[int, list[int]] | None = None) -> float:
    """CPU seconds of ``pid``, its reaped children and its live descendants."""
    kids = children_map() if kids is None else kids
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += own_ticks(p)
        todo.extend(kids.get(p, ()))
    return total / TICK


def parent_of(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    return int(_fields(stat)[1]) if stat else None


def thread_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Live threads of ``pid``: tid -> (comm, CPU seconds)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        stat = _read(f"/proc/{pid}/task/{tid}/stat")
        if stat is None:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        f = _fields(stat)
        out[int(tid)] = (comm, (int(f[11]) + int(f[12])) / TICK)
    return out


def thread_group(name: str) -> str:
    """Pool threads by name without their serial numbers: ThreadPoolExecutor-3_1 -> ..._N."""
    return re.sub(r"\d+", "N", name)


@dataclass
class ThreadLog:
    """Names and exit-time CPU of threads, as logged by the measured process."""

    names: dict[int, str] = field(default_factory=dict)
    exits: list[tuple[int, str, float]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path | None) -> ThreadLog:
        log = cls()
        if path is None or not path.exists():
            return log
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[0] == "start":
                log.names[int(parts[1])] = parts[2]
            elif len(parts) >= 4 and parts[0] == "exit":
                log.exits.append((int(parts[1]), parts[2], float(parts[3])))
        return log


class ThreadWindow:
    """CPU seconds per thread name of one process between ``__init__`` and ``close``."""

    def __init__(self, pid: int, log: Path | None) -> None:
        self.pid, self.log = pid, log
        self.offset = len(ThreadLog.read(log).exits)
        self.start = thread_seconds(pid)

    def close(self) -> dict[str, float]:
        end = thread_seconds(self.pid)
        log = ThreadLog.read(self.log)
        names = log.names

        def name(tid: int, comm: str) -> str:
            return "MainThread" if tid == self.pid else names.get(tid, comm)

        per: dict[str, float] = {}
        started_before = dict(self.start)
        for tid, logged_name, seconds in log.exits[self.offset:]:
            before = started_before.pop(tid, ("", 0.0))[1]
            key = thread_group(logged_name)
            per[key] = per.get(key, 0.0) + max(seconds - before, 0.0)
        for tid, (comm, seconds) in end.items():
            before = started_before.pop(tid, ("", 0.0))[1]
            key = thread_group(name(tid, comm))
            per[key] = per.get(key, 0.0) + max(seconds - before, 0.0)
        return per


def redis_cpu_seconds(url: str) -> float | None:
    """used_cpu_user + used_cpu_sys of the Redis server (INFO cpu), None if unreachable."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), 2) as s:
            s.sendall(b"*2\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                data += chunk
            header, _, data = data.partition(b"\r\n")
            size = int(header[1:]) if header.startswith(b"$") else 0
            while len(data) < size:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    values = dict(line.split(":", 1) for line in data.decode(errors="replace").splitlines()
                  if ":" in line)
    try:
        return float(values["used_cpu_user"]) + float(values["used_cpu_sys"])
    except (KeyError, ValueError):
        return None
