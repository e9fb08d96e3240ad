"""PostgreSQL or Redis restarted under load: the engine and the workers reconnect and carry
on, and no start or signal the API accepted is lost.

These restart this machine's servers (as CI does, as root), and always bring them back up,
even when the test fails: other tests depend on them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import sdk
from tests.e2e.harness import Stack

from . import figures, load
from .conftest import on_postgres, on_redis

IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_cluster() -> list[str] | None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must run this test)")
    pytest.skip(reason)


def _pg_up(stack_url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(stack_url, connect_timeout=2):
            return True
    except Exception:
        return False


@contextmanager
def postgres_restarted_later(stack: Stack) -> Iterator[dict[str, float]]:
    cluster = _pg_cluster()
    if cluster is None:
        _skip_or_fail("pg_ctlcluster and /etc/postgresql are needed to restart PostgreSQL")
    assert cluster is not None
    timing: dict[str, float] = {}
    try:
        yield timing
    finally:
        if not _pg_up(stack.env["DATABASE_URL"]):
            subprocess.run([*cluster, "start"], timeout=120, check=False)


def restart_postgres(timing: dict[str, float]) -> None:
    cluster = _pg_cluster()
    assert cluster is not None
    started = time.monotonic()
    subprocess.run([*cluster, "restart"], timeout=120, check=True, capture_output=True)
    timing["restart_seconds"] = round(time.monotonic() - started, 2)


REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2).ping())
    except Exception:
        return False


def _start_redis() -> None:
    subprocess.run(REDIS_START, timeout=30, check=False, capture_output=True)
    for _ in range(100):
        if _redis_up():
            return
        time.sleep(0.1)


class Load:
    """Starts workflows and signals them from a thread, noting every call the API accepted."""

    def __init__(self, stack: Stack, url: str, prefix: str, count: int) -> None:
        self.stack, self.url, self.prefix, self.count = stack, url, prefix, count
        self.accepted_starts: list[str] = []
        self.accepted_signals: dict[str, int] = {}
        self.refused = 0
        self.thread = threading.Thread(target=self.run, name="chaos-load", daemon=True)

    def run(self) -> None:
        with sdk.Client(self.url, token=self.stack.token, timeout=10) as client:
            for i in range(self.count):
                workflow_id = f"{self.prefix}{i}"
                try:
                    if i % 2:
                        load.start(client, "chain", workflow_id, {"start": i, "sleep": 0.2})
                    else:
                        load.start(client, "waits_for_signal", workflow_id)
                except Exception:
                    self.refused += 1
                    continue
                self.accepted_starts.append(workflow_id)
                if i % 2 == 0:
                    handle = client.get_workflow_handle(workflow_id)
                    try:
                        load.retrying(lambda: handle.signal("go", i))  # noqa: B023
                        self.accepted_signals[workflow_id] = i
                    except Exception:
                        self.refused += 1
                time.sleep(0.02)

    def check(self, stack: Stack) -> dict[str, int]:
        """Every accepted start completed; every accepted signal reached its run."""
        lost = 0
        with sdk.Client(self.url, token=stack.token, timeout=70) as client:
            for workflow_id in self.accepted_starts:
                result = client.get_workflow_handle(workflow_id).result(timeout=120)
                i = int(workflow_id.rsplit("-", 1)[-1])
                if workflow_id in self.accepted_signals:
                    lost += result != i
                elif i % 2:
                    lost += result != i + 5
        return {"accepted_starts": len(self.accepted_starts),
                "accepted_signals": len(self.accepted_signals), "refused": self.refused,
                "lost": lost}


def _run_with_restart(stack: Stack, logs: Path, prefix: str, restart: object) -> dict[str, int]:
    count = max(40, load.env_int("CHAOS_WORKFLOWS", 500) // 5)
    engine = stack.engine(log=logs / "engine.log")
    workers = [stack.worker(*load.WORKER, engine=engine, log=logs / f"w{i}.log")
               for i in range(2)]
    work = Load(stack, engine.url, prefix, count)
    try:
        work.thread.start()
        time.sleep(2.0)
        assert callable(restart)
        restart()
        work.thread.join(timeout=300)
        assert not work.thread.is_alive(), "the load did not finish"
        seen = load.wait_closed(stack, prefix, len(work.accepted_starts), timeout=180)
        outcome = work.check(stack)
        report = load.audit(stack, prefix)
    finally:
        for worker in workers:
            worker.stop()
        engine.stop()
    assert seen == {"completed": len(work.accepted_starts)}, seen
    assert outcome["lost"] == 0, outcome
    assert report["problems"] == [], report["problems"]
    return outcome


@pytest.mark.skipif(not on_postgres(), reason="needs DATABASE_URL=postgres://...")
def test_postgres_restarted_under_load(stack: Stack, logs: Path) -> None:
    with postgres_restarted_later(stack) as timing:
        outcome = _run_with_restart(stack, logs, "pgr-", lambda: restart_postgres(timing))
    figures.record("postgres_restart", **outcome, **timing)


@pytest.mark.skipif(not on_redis(), reason="needs REDIS_URL=redis://...")
def test_redis_restarted_under_load(stack: Stack, logs: Path) -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        _skip_or_fail("redis-server and redis-cli are needed to restart Redis")
    down: dict[str, float] = {}

    def restart() -> None:
        subprocess.run(["redis-cli", "shutdown", "nosave"], timeout=30, check=False,
                       capture_output=True)
        stopped = time.monotonic()
        time.sleep(2.0)
        _start_redis()
        down["down_seconds"] = round(time.monotonic() - stopped, 2)

    try:
        outcome = _run_with_restart(stack, logs, "redisr-", restart)
    finally:
        if not _redis_up():
            _start_redis()
    figures.record("redis_restart", **outcome, **down)
