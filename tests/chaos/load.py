"""Helpers the chaos tests share: start a workload that survives an engine going away, read
the stack's database directly, and audit it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

import sdk
from tests.e2e.harness import ROOT, Stack

MODULE = "tests.chaos.chaos_workflows"
# The workers' credit: enough to keep the engine busy, small enough that a worker's backlog
# of completions never delays its pings past the lease timeout on a loaded 2-core machine.
WORKER = (MODULE, "--max-activities", "20", "--max-workflow-tasks", "20")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def retrying(call: Callable[[], Any], *, attempts: int = 300, pause: float = 0.2) -> Any:
    """``call()`` until it gets an answer from the engine (bounded): a transport error or a
    5xx while an engine or a server restarts is retried; an API error otherwise is final."""
    for attempt in range(attempts):
        try:
            return call()
        except (httpx.TransportError, sdk.SchedAPIError) as exc:
            if isinstance(exc, sdk.SchedAPIError) and exc.status_code < 500:
                raise
            if attempt == attempts - 1:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def start(client: sdk.Client, workflow: str, workflow_id: str, input: Any = None) -> None:
    """Start ``workflow_id`` exactly once, however often the call must be retried."""
    def call() -> None:
        try:
            client.start_workflow(workflow, input, workflow_id=workflow_id)
        except sdk.WorkflowAlreadyStartedError:
            pass  # an earlier attempt was accepted before its answer was lost
    retrying(call)


def query(stack: Stack, sql: str) -> list[tuple[Any, ...]]:
    url = stack.env.get("DATABASE_URL", "")
    if url.startswith(("postgres", "pgsql")):
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            return list(conn.execute(sql).fetchall())
    db = sqlite3.connect(f"file:{stack.env['SCHED_DATA_DIR']}/sched.sqlite3?mode=ro", uri=True,
                         timeout=30)
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


def statuses(stack: Stack, prefix: str) -> dict[str, int]:
    rows = retrying_db(lambda: query(
        stack, "SELECT status, count(*) FROM workflows_execution "
               f"WHERE workflow_id LIKE '{prefix}%' GROUP BY status"))
    return {str(status): int(n) for status, n in rows}


def retrying_db(call: Callable[[], Any], attempts: int = 100) -> Any:
    for attempt in range(attempts):
        try:
            return call()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def wait_closed(stack: Stack, prefix: str, count: int, *, timeout: float,
                tick: Callable[[], None] | None = None) -> dict[str, int]:
    """Wait (at most ``timeout`` s) until ``count`` runs under ``prefix`` are closed."""
    deadline = time.monotonic() + timeout
    while True:
        seen = statuses(stack, prefix)
        closed = sum(n for status, n in seen.items() if status != "running")
        if closed >= count or time.monotonic() > deadline:
            return seen
        if tick is not None:
            tick()
        time.sleep(0.5)


def audit(stack: Stack, prefix: str) -> dict[str, Any]:
    env = {**stack.env, "DJANGO_SETTINGS_MODULE": "schedproject.settings"}
    out = subprocess.run([sys.executable, "-m", "tests.chaos.audit", prefix], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def results(stack: Stack, prefix: str) -> dict[str, int]:
    """How many runs under ``prefix`` returned each (JSON) result."""
    rows = query(stack, "SELECT result, count(*) FROM workflows_execution "
                        f"WHERE workflow_id LIKE '{prefix}%' GROUP BY result")
    return {json.dumps(json.loads(r) if isinstance(r, str) else r): int(n) for r, n in rows}


def on_postgres(stack: Stack) -> bool:
    return stack.env.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))
