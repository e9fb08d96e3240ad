"""What a measured window costs: CPU seconds per process (and per engine thread), Redis's
CPU, and the commits of the run's PostgreSQL database; plus shared statistics helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.bench import procstat


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def percentiles(values: list[float]) -> dict[str, float]:
    return {p: round(percentile(values, v), 2) for p, v in (("p50", 50), ("p95", 95),
                                                            ("p99", 99))}


@contextmanager
def pg_admin(pg_base: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(pg_base + "/postgres", autocommit=True, connect_timeout=5) as conn:
        yield conn


def pg_reachable(pg_base: str) -> str | None:
    """None if the server answers, else why not."""
    try:
        with pg_admin(pg_base) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return " ".join(f"{type(exc).__name__}: {exc}".split())
    return None


def pg_commit_rate(url: str, seconds: float = 3.0) -> float:
    """Single-row INSERT + COMMIT on one connection, as fast as it goes."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_commit (id serial PRIMARY KEY, v int)")
        n = 0
        end = time.monotonic() + seconds
        start = time.monotonic()
        while time.monotonic() < end:
            conn.execute("INSERT INTO bench_commit (v) VALUES (1)")
            n += 1
        return n / (time.monotonic() - start)


def pg_xact_commits(pg_base: str, database: str) -> int:
    # Read over a connection to another database, so reading adds no commit to the count.
    with pg_admin(pg_base) as conn:
        return int(conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                                (database,)).fetchone()[0])


def postmaster_pid(pg_base: str) -> int | None:
    """The server's postmaster, if it runs on this machine (its backends are its children)."""
    with pg_admin(pg_base) as conn:
        backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    parent = procstat.parent_of(backend)
    return parent


class Window:
    """``open`` ... ``close``: CPU of each named process (with its children), of the engine's
    threads by name, of the whole PostgreSQL server (all its processes: it serves only this
    run on a quiet machine) and of Redis; and the commits of ``database``.

    PostgreSQL publishes a backend's counters up to a second after its transactions, and an
    idle backend's up to 10 s after: ``settle`` seconds are waited before the first reading
    and after the last; the system's idle commit rate (its background loops), measured
    just before the window, times the trailing wait is taken out of the count.
    """

    def __init__(self, processes: dict[str, int], *,
                 threads_of: dict[str, tuple[int, Path | None]] | None = None,
                 database: str | None = None, pg_base: str = "",
                 redis_url: str | None = None) -> None:
        self.processes = processes
        self.threads_of = threads_of or {}
        self.database, self.pg_base, self.redis_url = database, pg_base, redis_url
        self.postmaster = postmaster_pid(pg_base) if database else None

    def _cpu(self) -> dict[str, float]:
        kids = procstat.children_map()
        cpu = {name: procstat.family_seconds(pid, kids) for name, pid in self.processes.items()}
        if self.postmaster:
            cpu["postgres"] = procstat.family_seconds(self.postmaster, kids)
        if self.redis_url:
            redis = procstat.redis_cpu_seconds(self.redis_url)
            if redis is not None:
                cpu["redis"] = redis
        return cpu

    def open(self, settle: float = 0.0) -> None:
        if self.database:
            time.sleep(settle)  # what came before is published
            before = pg_xact_commits(self.pg_base, self.database)
            self.idle = min(5.0, max(settle / 2, 1.0)) if settle else 0.0
            time.sleep(self.idle)
            self.commits = pg_xact_commits(self.pg_base, self.database)
            self.idle_rate = (self.commits - before) / self.idle if self.idle else 0.0
        self.threads = {name: procstat.ThreadWindow(pid, log)
                        for name, (pid, log) in self.threads_of.items()}
        self.cpu = self._cpu()
        self.started = time.monotonic()

    def close(self, workflows: int, *, seconds: float, settle: float = 0.0,
              own_transactions: int = 0) -> dict[str, Any]:
        """Figures per workflow. ``own_transactions``: the bench's own statements on the
        run's database inside the window, not counted as the system's commits."""
        wall = time.monotonic() - self.started
        end = self._cpu()
        threads = {name: w.close() for name, w in self.threads.items()}
        cpu = {k: end[k] - self.cpu[k] for k in end if k in self.cpu}
        cpu["total"] = sum(cpu.values())
        out: dict[str, Any] = {
            "window_seconds": round(wall, 3),
            "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_ms_per_workflow": {k: round(v * 1000 / workflows, 3) for k, v in cpu.items()},
        }
        for name, per in threads.items():
            unnamed = cpu.get(name, 0.0) - sum(per.values())
            if unnamed > 0.02:  # ticks of the process not found in any thread read
                per["(not attributed)"] = unnamed
            out[f"{name}_threads_cpu_ms_per_workflow"] = {
                k: round(v * 1000 / workflows, 3)
                for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v > 0}
        if self.database:
            time.sleep(settle)
            settled = pg_xact_commits(self.pg_base, self.database)
            commits = (settled - self.commits - own_transactions
                       - round(self.idle_rate * settle))
            out.update({"pg_commits": commits,
                        "pg_commits_per_workflow": round(commits / workflows, 2),
                        "pg_commits_per_second": round(commits / seconds, 1),
                        "pg_idle_commits_per_second": round(self.idle_rate, 1)})
        return out
