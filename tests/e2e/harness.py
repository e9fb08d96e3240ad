"""Running the engine and workers as real processes for end-to-end tests.

Each test session gets its own database: a SQLite file in a temporary folder, or, when
``DATABASE_URL`` points at PostgreSQL, a fresh database on that server (dropped at the end).
``REDIS_URL`` is passed through, so on CI the engines talk over channels-redis. Processes get
short lease and heartbeat timeouts so failure paths finish in seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """One database plus the environment every process of a test session shares."""

    env: dict[str, str]
    token: str = ""
    pg_admin_url: str | None = None
    pg_database: str | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, check=False, timeout=120)
        if check and done.returncode:  # say why: a bare CalledProcessError hides it
            raise AssertionError(f"manage.py {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stderr[-4000:]}")
        return done

    def engine(self, *, port: int | None = None, extra_env: dict[str, str] | None = None,
               log: Path | None = None) -> Engine:
        engine = Engine(self, port or free_port(), extra_env or {}, log)
        engine.start()
        return engine

    def worker(self, *modules: str, task_queue: str = "default", engine: Engine,
               extra_env: dict[str, str] | None = None, log: Path | None = None) -> Proc:
        cmd = [sys.executable, "-m", "sdk.worker", "--engine", engine.url, "--token",
               self.token, "--task-queue", task_queue, *modules]
        return Proc.spawn(cmd, {**self.env, **(extra_env or {})}, log, self)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if self.pg_admin_url and self.pg_database:
            import psycopg

            with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]

    @classmethod
    def spawn(cls, cmd: list[str], env: dict[str, str], log: Path | None,
              stack: Stack) -> Proc:
        out = open(log, "ab") if log else subprocess.DEVNULL
        popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        stack.processes.append(popen)
        return cls(popen)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


class Engine:
    def __init__(self, stack: Stack, port: int, extra_env: dict[str, str],
                 log: Path | None) -> None:
        self.stack = stack
        self.port = port
        self.extra_env = extra_env
        self.log = log
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        cmd = [sys.executable, "manage.py", "runengine", "--port", str(self.port)]
        self.proc = Proc.spawn(cmd, {**self.stack.env, **self.extra_env}, self.log, self.stack)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.popen.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.popen.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("engine did not become healthy")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> int:
        assert self.proc is not None
        return self.proc.stop()

    def restart(self) -> None:
        self.start()


def make_stack(tmp: Path, *, database_url: str | None = None, redis_url: str | None = None,
               fast_failover: bool = True) -> Stack:
    """A fresh database and the environment for its processes. ``database_url`` and
    ``redis_url`` default to the environment's ``DATABASE_URL`` and ``REDIS_URL``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update({
        "SCHED_SECRET_KEY": "e2e-secret-" + "k" * 40,
        "SCHED_DATA_DIR": str(tmp),
        "SCHED_LEASE_TIMEOUT_SECONDS": "3",
        "SCHED_WORKER_HEARTBEAT_SECONDS": "0.5",
        "SCHED_WORKFLOW_TASK_TIMEOUT_SECONDS": "5",
        "SCHED_LEADER_CHECK_SECONDS": "0.5",
        "SCHED_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    if not fast_failover:
        for name in ("SCHED_LEASE_TIMEOUT_SECONDS", "SCHED_WORKER_HEARTBEAT_SECONDS",
                     "SCHED_WORKFLOW_TASK_TIMEOUT_SECONDS", "SCHED_LEADER_CHECK_SECONDS"):
            env.pop(name)
        env["SCHED_LOG_LEVEL"] = "WARNING"
    env.pop("DJANGO_SETTINGS_MODULE", None)
    stack = Stack(env)
    url = database_url if database_url is not None else os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres", "pgsql")):
        import psycopg

        base, _, _ = url.rpartition("/")
        stack.pg_admin_url = base + "/postgres"
        stack.pg_database = f"sched_e2e_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(stack.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{stack.pg_database}"')
        env["DATABASE_URL"] = f"{base}/{stack.pg_database}"
    else:
        env.pop("DATABASE_URL", None)
    stack.manage("migrate", "--verbosity", "0")
    stack.token = stack.manage("createtoken", "e2e").stdout.strip().splitlines()[-1]
    return stack


@contextmanager
def running_stack(tmp: Path) -> Iterator[Stack]:
    stack = make_stack(tmp)
    try:
        yield stack
    finally:
        stack.close()


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def reruns(step_log: Path) -> int:
    """How many activity bodies ran more than once, from a log of one line per run of a
    body, ``<workflow id> <activity id> ...`` (the test activities write it when given a
    log path)."""
    runs = Counter(" ".join(line.split()[:2]) for line in step_log.read_text().splitlines())
    return sum(n - 1 for n in runs.values() if n > 1)


def log_step(variable: str, workflow_id: str, activity_id: str, attempt: int) -> None:
    """Append one run of an activity body to the log ``$variable`` names, if it is set."""
    path = os.environ.get(variable)
    if path:
        with open(path, "a") as log:
            log.write(f"{workflow_id} {activity_id} {attempt}\n")
