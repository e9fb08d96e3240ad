"""The peers: DBOS Transact and Celery, each in a virtualenv of its own under
``bench-results/venvs/`` (made once with this interpreter, reused while its requirement is
unchanged), each driven by its script in ``peers/`` over the protocol of sched_client.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.bench.measure import Window, percentiles, pg_admin
from tests.bench.procs import Children

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
REQUIREMENTS = {"dbos": "dbos==3.4.*", "celery": "celery[redis]==5.7.*"}
DURABLE = {"dbos": True, "celery": False}


def venv_python(venvs: Path, peer: str) -> Path:
    """The peer's virtualenv, created (or re-created when its requirement changed)."""
    venv = venvs / peer
    python = venv / "bin" / "python"
    marker = venv / ".requirement"
    want = REQUIREMENTS[peer]
    if python.exists() and marker.exists() and marker.read_text() == want:
        return python
    print(f"[{peer}] creating {venv} with {want} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                   timeout=300)
    log = venvs / f"{peer}-pip.log"
    with open(log, "wb") as out:
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", want],
                              stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False)
    if done.returncode:
        raise RuntimeError(f"pip install {want} failed (log: {log})")
    marker.write_text(want)
    return python


def redis_reachable(url: str) -> str | None:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), 2) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                return "no PONG"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def redis_delete(url: str, *keys: str) -> None:
    u = urlparse(url)
    db = (u.path or "/0").lstrip("/") or "0"
    parts = [b"DEL", *(k.encode() for k in keys)]
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), 2) as s:
        for cmd in ([b"SELECT", db.encode()], parts):
            s.sendall(b"*%d\r\n" % len(cmd) + b"".join(b"$%d\r\n%s\r\n" % (len(c), c)
                                                        for c in cmd))
            s.recv(64)


def run_peer(peer: str, args: Any, tmp: Path, venvs: Path, pg_base: str,
             redis_url: str) -> dict[str, Any]:
    python = venv_python(venvs, peer)
    logs = tmp / peer
    logs.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "SCHED_", "DJANGO", "VIRTUAL_ENV"))}
    env["PYTHONUNBUFFERED"] = "1"
    out: dict[str, Any] = {"durable": DURABLE[peer], "requirement": REQUIREMENTS[peer]}
    database: str | None = None
    queue = f"sched-bench-{uuid.uuid4().hex[:10]}"
    try:
        with Children() as children:
            processes: dict[str, int] = {}
            if peer == "dbos":
                database = f"sched_bench_dbos_{uuid.uuid4().hex[:10]}"
                with pg_admin(pg_base) as conn:
                    conn.execute(f'CREATE DATABASE "{database}"')
                url = pg_base.replace("postgres://", "postgresql://", 1) + "/" + database
                client = children.start([str(python), str(PEERS / "dbos_peer.py"), url],
                                        cwd=PEERS, env=env, log=logs / "dbos.log", pipe=True)
                processes["dbos app (client + workflows)"] = client.pid
            else:
                env.update({"SCHED_BENCH_CELERY_REDIS": redis_url,
                            "SCHED_BENCH_CELERY_QUEUE": queue})
                worker = children.start(
                    [str(python), "-m", "celery", "-A", "celery_app", "worker",
                     "--concurrency", str(args.celery_concurrency), "--without-gossip",
                     "--without-mingle", "--loglevel", "WARNING"],
                    cwd=PEERS, env=env, log=logs / "worker.log")
                client = children.start([str(python), str(PEERS / "celery_peer.py")],
                                        cwd=PEERS, env=env, log=logs / "client.log",
                                        pipe=True)
                processes.update({"client": client.pid, "celery worker": worker.pid})
            ready = client.message(timeout=300)
            out["version"] = ready.get(peer, "")
            client.ask("warmup", timeout=300)
            if args.w1 > 0:
                print(f"[{peer}] W1 ...", flush=True)
                window = Window(processes, database=database, pg_base=pg_base,
                                redis_url=redis_url if peer == "celery" else None)
                window.open(settle=args.settle)
                answer = client.ask(f"w1 {args.w1}", timeout=3600)
                seconds = answer["last_result"] - answer["first_start"]
                w1: dict[str, Any] = {
                    "workflows": args.w1, "seconds": round(seconds, 3),
                    "workflows_per_second": round(args.w1 / seconds, 1),
                    "not_completed": answer["not_completed"]}
                w1.update(window.close(args.w1, seconds=seconds, settle=args.settle))
                out["W1"] = w1
                print(f"[{peer}] W1: {json.dumps(w1)}", flush=True)
            if args.w2 > 0:
                print(f"[{peer}] W2 ...", flush=True)
                answer = client.ask(f"w2 {args.w2}", timeout=60 * args.w2 + 60)
                out["W2"] = {"workflows": args.w2,
                             "client_ms": percentiles(answer["latencies_ms"])}
                print(f"[{peer}] W2: {json.dumps(out['W2'])}", flush=True)
            client.send("quit")
            time.sleep(0.5)
    finally:
        if database:
            with pg_admin(pg_base) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if peer == "celery":
            try:
                redis_delete(redis_url, queue, f"_kombu.binding.{queue}")
            except OSError:
                pass
    return out
