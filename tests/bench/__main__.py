"""``make bench``: sched's benchmarks (not a test; figures go to BENCHMARKS.md).

W1 throughput: 2,000 workflows of 3 activities, started as fast as the client can.
W2 latency: 200 sequential workflows of 3 activities, start-to-result.
W3 timers: 200 workflows that each sleep 1 s; wake-up lateness.
W4 long history: one workflow of 2,000 sequential activities; the mean time per activity of
   the last 200 over that of the first 200.
Each runs on SQLite and on PostgreSQL + Redis (when reachable), with one engine process and
one worker process. The PostgreSQL single-row commit rate is measured in the same run, and
the engine's transactions per second during W1 are given as a ratio of it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sdk
from tests.e2e.harness import ROOT, Stack, make_stack

MODULE = "tests.bench.bench_workflows"
PG_BASE = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Db:
    """Read-only SQL on the benchmark's database, from outside the engine."""

    def __init__(self, stack: Stack) -> None:
        url = stack.env.get("DATABASE_URL")
        if url:
            import psycopg

            self.conn: Any = psycopg.connect(url, autocommit=True)
            self.mark = "%s"
        else:
            self.conn = sqlite3.connect(Path(stack.env["SCHED_DATA_DIR"]) / "sched.sqlite3")
            self.mark = "?"
        self.pg = bool(url)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql.replace("?", self.mark), args)
        return list(cur.fetchall())

    def ts(self, value: Any) -> datetime:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return when if when.tzinfo else when.replace(tzinfo=UTC)  # SQLite keeps naive UTC

    def attrs(self, value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else json.loads(value)

    def xact_commits(self) -> int:
        return int(self.rows("SELECT xact_commit FROM pg_stat_database "
                             "WHERE datname = current_database()")[0][0])


def pg_commit_rate(url: str, seconds: float = 3.0) -> float:
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


async def start_many(client: sdk.AsyncClient, workflow: str, inputs: list[Any],
                     concurrency: int = 32) -> list[str]:
    ids: list[str] = []
    queue = list(enumerate(inputs))

    async def starter() -> None:
        while queue:
            i, value = queue.pop()
            handle = await client.start_workflow(workflow, value, workflow_id=f"{workflow}-{i}")
            ids.append(handle.workflow_id)

    await asyncio.gather(*(starter() for _ in range(concurrency)))
    return ids


def wait_closed(db: Db, workflow_type: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = db.rows("SELECT count(*) FROM workflows_execution WHERE workflow_type = ? "
                       "AND status != 'running'", workflow_type)[0][0]
        if done >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{workflow_type}: not all {count} closed in {timeout}s")


def w1(stack: Stack, db: Db, engine_url: str, count: int) -> dict[str, Any]:
    commits_before = db.xact_commits() if db.pg else 0

    async def go() -> None:
        async with sdk.AsyncClient(engine_url, token=stack.token) as client:
            await start_many(client, "three_steps", list(range(count)))

    asyncio.run(go())
    wait_closed(db, "three_steps", count, timeout=600)
    commits = (db.xact_commits() - commits_before) if db.pg else None
    first, last, failed = db.rows(
        "SELECT min(created_at), max(closed_at), sum(CASE WHEN status = 'completed' THEN 0 "
        "ELSE 1 END) FROM workflows_execution WHERE workflow_type = 'three_steps'")[0]
    seconds = (db.ts(last) - db.ts(first)).total_seconds()
    out = {"workflows": count, "seconds": round(seconds, 2),
           "workflows_per_second": round(count / seconds, 1), "not_completed": failed}
    if commits is not None:
        out["engine_transactions"] = commits
        out["transactions_per_workflow"] = round(commits / count, 1)
        out["engine_tps"] = round(commits / seconds, 1)
    return out


def w2(stack: Stack, db: Db, engine_url: str, count: int) -> dict[str, Any]:
    latencies = []
    with sdk.Client(engine_url, token=stack.token) as client:
        for i in range(count):
            started = time.perf_counter()
            handle = client.start_workflow("three_steps", i, workflow_id=f"w2-{i}")
            handle.result(timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
    rows = db.rows("SELECT created_at, closed_at FROM workflows_execution "
                   "WHERE workflow_id LIKE ?", "w2-%")
    engine_side = [(db.ts(b) - db.ts(a)).total_seconds() * 1000 for a, b in rows]
    return {"workflows": count,
            "client_ms": {p: round(percentile(latencies, v), 2)
                          for p, v in (("p50", 50), ("p95", 95), ("p99", 99))},
            "engine_ms": {p: round(percentile(engine_side, v), 2)
                          for p, v in (("p50", 50), ("p95", 95), ("p99", 99))}}


def w3(stack: Stack, db: Db, engine_url: str, count: int) -> dict[str, Any]:
    async def go() -> None:
        async with sdk.AsyncClient(engine_url, token=stack.token) as client:
            await start_many(client, "sleep_one", [1.0] * count)

    asyncio.run(go())
    wait_closed(db, "sleep_one", count, timeout=120)
    fired = db.rows(
        "SELECT s.attributes, f.timestamp FROM workflows_historyevent f "
        "JOIN workflows_historyevent s ON s.execution_id = f.execution_id "
        "AND s.event_type = 'TimerStarted' "
        "JOIN workflows_execution e ON e.id = f.execution_id "
        "WHERE f.event_type = 'TimerFired' AND e.workflow_type = 'sleep_one'")
    lateness = [(db.ts(ts) - datetime.fromisoformat(db.attrs(a)["fire_at"])).total_seconds()
                * 1000 for a, ts in fired]
    return {"workflows": count, "lateness_ms": {
        "p50": round(percentile(lateness, 50), 2), "p99": round(percentile(lateness, 99), 2),
        "max": round(max(lateness), 2)}}


def w4(stack: Stack, db: Db, engine_url: str, count: int) -> dict[str, Any]:
    with sdk.Client(engine_url, token=stack.token) as client:
        handle = client.start_workflow("long_history", count, workflow_id="w4")
        assert handle.result(timeout=1200) == count
    stamps = [db.ts(r[0]) for r in db.rows(
        "SELECT h.timestamp FROM workflows_historyevent h JOIN workflows_execution e "
        "ON e.id = h.execution_id WHERE e.workflow_id = 'w4' AND "
        "h.event_type = 'ActivityTaskCompleted' ORDER BY h.event_id")]
    steps = [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(stamps)]
    window = min(200, len(steps) // 2)
    first, last = statistics.mean(steps[:window]), statistics.mean(steps[-window:])
    return {"activities": count, "first_ms_per_activity": round(first, 3),
            "last_ms_per_activity": round(last, 3), "ratio": round(last / first, 3)}


def run_backend(name: str, args: argparse.Namespace, results: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if name == "postgres":
            stack = make_stack(Path(tmp), database_url=PG_BASE + "/postgres", redis_url=REDIS,
                               fast_failover=False)
        else:
            stack = make_stack(Path(tmp), database_url="", redis_url="", fast_failover=False)
            stack.env.pop("REDIS_URL", None)
        try:
            logs = Path(tmp)
            engine = stack.engine(log=logs / "engine.log")
            stack.worker(MODULE, engine=engine, log=logs / "worker.log",
                         extra_env={"SCHED_LOG_LEVEL": "WARNING"})
            time.sleep(1.0)
            db = Db(stack)
            out: dict[str, Any] = {}
            if name == "postgres":
                out["pg_single_row_commits_per_second"] = round(
                    pg_commit_rate(stack.env["DATABASE_URL"]), 1)
            for label, fn, n in (("W1", w1, args.w1), ("W2", w2, args.w2),
                                 ("W3", w3, args.w3), ("W4", w4, args.w4)):
                if n <= 0:
                    continue
                print(f"[{name}] {label} ...", flush=True)
                out[label] = fn(stack, db, engine.url, n)
                print(f"[{name}] {label}: {json.dumps(out[label])}", flush=True)
            if name == "postgres" and "W1" in out and "engine_tps" in out["W1"]:
                out["W1"]["engine_tps_over_pg_commit_rate"] = round(
                    out["W1"]["engine_tps"] / out["pg_single_row_commits_per_second"], 3)
            results[name] = out
        finally:
            stack.close()


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "when": datetime.now().isoformat(timespec="seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--w1", type=int, default=2000)
    parser.add_argument("--w2", type=int, default=200)
    parser.add_argument("--w3", type=int, default=200)
    parser.add_argument("--w4", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "latest.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine()}
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    for name in backends:
        run_backend(name, args, results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
