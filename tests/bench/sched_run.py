"""sched under the bench: one engine and one worker process of a checkout (the working tree,
or a baseline commit's worktree), on SQLite or on PostgreSQL + Redis, and the four workloads."""

from __future__ import annotations

import itertools
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.bench.measure import Window, percentiles, pg_admin, pg_commit_rate
from tests.bench.procs import Children

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE / "bench_workflows.py"   # the same workload code for every checkout
CLIENT = HERE / "sched_client.py"
THREADNAMES = HERE / "threadnames"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Db:
    """Read-only SQL on the run's database, from outside the engine. On PostgreSQL every
    statement is its own transaction: ``queries`` counts them, so the bench's own reads can
    be taken out of the database's commit count."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        if database_url:
            import psycopg

            self.conn: Any = psycopg.connect(database_url, autocommit=True)
            self.mark = "%s"
        else:
            self.conn = sqlite3.connect(data_dir / "sched.sqlite3")
            self.mark = "?"
        self.pg = bool(database_url)
        self.queries = 0

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        self.queries += 1
        cur = self.conn.execute(sql.replace("?", self.mark), args)
        return list(cur.fetchall())

    def ts(self, value: Any) -> datetime:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return when if when.tzinfo else when.replace(tzinfo=UTC)  # SQLite keeps naive UTC

    def attrs(self, value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else json.loads(value)

    def close(self) -> None:
        self.conn.close()


class Checkout:
    """The code a run imports: ``root`` is put first on PYTHONPATH and is the cwd."""

    def __init__(self, root: Path, label: str) -> None:
        self.root = root.resolve()
        self.label = label

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST", "DJANGO_SETTINGS", "SCHED_BENCH_"))}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env.update({"PYTHONPATH": os.pathsep.join([str(self.root), str(THREADNAMES)]),
                    "PYTHONUNBUFFERED": "1", "SCHED_LOG_LEVEL": "WARNING"})
        env.update(extra)
        return env

    def has_local_activities(self) -> bool:
        """Whether this checkout's SDK has local activities (W1L and W2L need them)."""
        workflow = self.root / "sdk" / "_workflow.py"
        return "def execute_local_activity" in workflow.read_text(encoding="utf-8")

    def identify(self, env: dict[str, str]) -> dict[str, Any]:
        """Where the engine's and the SDK's modules are imported from under ``env``, and the
        commit checked out; raises if that is not this checkout."""
        probe = subprocess.run(
            [sys.executable, "-c", "import json, sdk, workflows, dispatch; print(json.dumps("
             "[sdk.__file__, workflows.__file__, dispatch.__file__]))"],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=60, check=True)
        files = json.loads(probe.stdout.strip().splitlines()[-1])
        for f in files:
            if not Path(f).resolve().is_relative_to(self.root):
                raise RuntimeError(f"{self.label}: {f} is imported, not from {self.root}")
        commit = subprocess.run(["git", "-C", str(self.root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(self.root), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return {"root": str(self.root), "commit": commit, "dirty": bool(dirty),
                "engine_module": str(Path(files[1]).parent)}


def run_sched(checkout: Checkout, backend: str, args: Any, tmp: Path,
              pg_base: str, redis_url: str, *, engines: int = 1) -> dict[str, Any]:
    """One engine and one worker of ``checkout`` on a fresh database; W1..W4. With
    ``engines`` 2 (PostgreSQL), two engines with a worker each, sharing the dispatch shards,
    and the client's starts spread over both."""
    tag = f"[{checkout.label} {backend}{'' if engines == 1 else f' x{engines} engines'}]"
    data = tmp / f"{checkout.label}-{backend}-{engines}"
    data.mkdir(parents=True)
    database = f"sched_bench_{uuid.uuid4().hex[:10]}"
    extra = {"SCHED_SECRET_KEY": "bench-secret-" + "k" * 40, "SCHED_DATA_DIR": str(data)}
    database_url = ""
    if backend == "postgres":
        database_url = f"{pg_base}/{database}"
        extra.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url})
        with pg_admin(pg_base) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
    env = checkout.env(extra)
    out: dict[str, Any] = {}
    try:
        with Children() as children:
            out["code"] = checkout.identify(env)
            print(f"{tag} code: {out['code']['engine_module']} at {out['code']['commit'][:12]}"
                  + (" (with uncommitted changes)" if out["code"]["dirty"] else ""),
                  flush=True)
            manage = [sys.executable, "manage.py"]
            subprocess.run([*manage, "migrate", "--verbosity", "0"], cwd=checkout.root,
                           env=env, check=True, capture_output=True, timeout=300)
            token = subprocess.run([*manage, "createtoken", "bench"], cwd=checkout.root,
                                   env=env, check=True, capture_output=True, text=True,
                                   timeout=120).stdout.strip().splitlines()[-1]
            port = free_port()
            thread_log = data / "engine-threads.tsv"
            engine = children.start(
                [*manage, "runengine", "--port", str(port)], cwd=checkout.root,
                env={**env, "SCHED_BENCH_THREAD_LOG": str(thread_log)}, log=data / "engine.log")
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, engine.alive)
            engine_cwd = Path(os.readlink(f"/proc/{engine.pid}/cwd")).resolve()
            if engine_cwd != checkout.root:
                raise RuntimeError(f"{tag} the engine runs in {engine_cwd}")
            out["code"]["engine_cwd"] = str(engine_cwd)
            worker = children.start(
                [sys.executable, "-m", "sdk.worker", "--engine", url, "--token", token,
                 "--task-queue", "default", str(WORKFLOWS)],
                cwd=checkout.root, env=env, log=data / "worker.log")
            urls = [url]
            extra_processes: dict[str, int] = {}
            for n in range(2, engines + 1):
                other_port = free_port()
                other = children.start(
                    [*manage, "runengine", "--port", str(other_port)], cwd=checkout.root,
                    env=env, log=data / f"engine{n}.log")
                other_url = f"http://127.0.0.1:{other_port}"
                wait_healthy(other_url, other.alive)
                other_worker = children.start(
                    [sys.executable, "-m", "sdk.worker", "--engine", other_url, "--token",
                     token, "--task-queue", "default", str(WORKFLOWS)],
                    cwd=checkout.root, env=env, log=data / f"worker{n}.log")
                urls.append(other_url)
                extra_processes.update({f"engine{n}": other.pid, f"worker{n}": other_worker.pid})
            client = children.start([sys.executable, str(CLIENT), ",".join(urls), token],
                                    cwd=checkout.root, env=env, log=data / "client.log",
                                    pipe=True)
            client.message(timeout=60)
            client.ask("warmup", timeout=120)
            db = Db(database_url, data)
            try:
                if backend == "postgres":
                    out["pg_single_row_commits_per_second"] = round(
                        pg_commit_rate(f"{pg_base}/{database}"), 1)
                processes = {"engine": engine.pid, "worker": worker.pid, "client": client.pid,
                             **extra_processes}
                on_pg = backend == "postgres"
                for label, n in (("W1", args.w1), ("W1L", args.w1l), ("W2", args.w2),
                                 ("W2L", args.w2l), ("W3", args.w3), ("W4", args.w4)):
                    if n <= 0:
                        continue
                    if label in ("W1L", "W2L") and not checkout.has_local_activities():
                        print(f"{tag} {label}: skipped (no local activities in this checkout)",
                              flush=True)
                        continue
                    print(f"{tag} {label} ...", flush=True)
                    if label in ("W1", "W1L"):
                        out[label] = w1(client, db, n, processes, thread_log,
                                        database if on_pg else None, pg_base,
                                        redis_url if on_pg else None, args.settle,
                                        local=label == "W1L")
                    elif label == "W2L":
                        out[label] = w2(client, db, n, local=True)
                    else:
                        out[label] = {"W2": w2, "W3": w3, "W4": w4}[label](client, db, n)
                    print(f"{tag} {label}: {json.dumps(out[label])}", flush=True)
            finally:
                db.close()
            for name, child in (("engine", engine), ("worker", worker)):
                if not child.alive():
                    raise RuntimeError(f"{tag} the {name} exited (log: {child.log})")
    finally:
        if backend == "postgres":
            with pg_admin(pg_base) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return out


def wait_healthy(url: str, alive: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("engine exited at start")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("engine did not become healthy")


def wait_closed(db: Db, prefix: str, count: int, timeout: float, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = db.rows("SELECT count(*) FROM workflows_execution WHERE workflow_id LIKE ? "
                       "AND status != 'running'", prefix + "-%")[0][0]
        if done >= count:
            return
        time.sleep(every)
    raise TimeoutError(f"{prefix}: not all {count} closed in {timeout}s")


def w1(client: Any, db: Db, count: int, processes: dict[str, int], thread_log: Path,
       database: str | None, pg_base: str, redis_url: str | None,
       settle: float, *, local: bool = False) -> dict[str, Any]:
    """W1 (``local``: W1L, the same with local activities)."""
    workflow = "three_local_steps" if local else "three_steps"
    window = Window(processes, threads_of={"engine": (processes["engine"], thread_log)},
                    database=database, pg_base=pg_base, redis_url=redis_url)
    own_queries = db.queries
    window.open(settle=settle)
    client.ask(f"{'w1l' if local else 'w1'} {count}", timeout=1200)
    wait_closed(db, workflow, count, timeout=1200)
    polls = db.queries - own_queries
    first, last, failed = db.rows(
        "SELECT min(created_at), max(closed_at), sum(CASE WHEN status = 'completed' THEN 0 "
        "ELSE 1 END) FROM workflows_execution WHERE workflow_id LIKE ?", workflow + "-%")[0]
    seconds = (db.ts(last) - db.ts(first)).total_seconds()
    out: dict[str, Any] = {"workflows": count, "seconds": round(seconds, 3),
                           "workflows_per_second": round(count / seconds, 1),
                           "not_completed": int(failed or 0)}
    out.update(window.close(count, seconds=seconds, settle=settle,
                            own_transactions=polls + 1))
    return out


def w2(client: Any, db: Db, count: int, *, local: bool = False) -> dict[str, Any]:
    """W2 (``local``: W2L, the same with local activities)."""
    command = "w2l" if local else "w2"
    latencies = client.ask(f"{command} {count}", timeout=60 * count + 60)["latencies_ms"]
    rows = db.rows("SELECT created_at, closed_at FROM workflows_execution "
                   "WHERE workflow_id LIKE ?", command + "-%")
    engine_side = [(db.ts(b) - db.ts(a)).total_seconds() * 1000 for a, b in rows]
    return {"workflows": count, "client_ms": percentiles(latencies),
            "engine_ms": percentiles(engine_side)}


def w3(client: Any, db: Db, count: int) -> dict[str, Any]:
    client.ask(f"w3 {count}", timeout=600)
    wait_closed(db, "sleep_one", count, timeout=300)
    fired = db.rows(
        "SELECT s.attributes, f.timestamp FROM workflows_historyevent f "
        "JOIN workflows_historyevent s ON s.execution_id = f.execution_id "
        "AND s.event_type = 'TimerStarted' "
        "JOIN workflows_execution e ON e.id = f.execution_id "
        "WHERE f.event_type = 'TimerFired' AND e.workflow_type = 'sleep_one'")
    lateness = [(db.ts(ts) - datetime.fromisoformat(db.attrs(a)["fire_at"])).total_seconds()
                * 1000 for a, ts in fired]
    return {"workflows": count, "lateness_ms": {
        **{k: v for k, v in percentiles(lateness).items() if k != "p95"},
        "max": round(max(lateness), 2)}}


def w4(client: Any, db: Db, count: int) -> dict[str, Any]:
    answer = client.ask(f"w4 {count}", timeout=3600)
    assert answer["result"] == count, answer
    stamps = [db.ts(r[0]) for r in db.rows(
        "SELECT h.timestamp FROM workflows_historyevent h JOIN workflows_execution e "
        "ON e.id = h.execution_id WHERE e.workflow_id = 'w4' AND "
        "h.event_type = 'ActivityTaskCompleted' ORDER BY h.event_id")]
    steps = [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(stamps)]
    window = min(200, len(steps) // 2)
    first, last = statistics.mean(steps[:window]), statistics.mean(steps[-window:])
    return {"activities": count, "first_ms_per_activity": round(first, 3),
            "last_ms_per_activity": round(last, 3), "ratio": round(last / first, 3)}
