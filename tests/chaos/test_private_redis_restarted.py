"""Redis restarted under load, on a Redis server of the test's own (a free port, no
persistence), so it runs beside other users of the machine's Redis: frames in the channel
layer when it goes away are lost, and every task leased to a socket must still reach it or
go back to the queue (see ``dispatch.keeper`` and ``WorkerConsumer.__call__``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, free_port

from . import figures
from .test_servers_restarted import _run_with_restart


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def up(self) -> bool:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                             text=True, timeout=10, check=False)
        return out.stdout.strip() == "PONG"

    def start(self) -> None:
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--daemonize", "yes",
                        "--dir", str(self.workdir)],
                       check=False, capture_output=True, timeout=30)
        for _ in range(100):
            if self.up():
                return
            time.sleep(0.1)
        raise RuntimeError("the private redis-server did not start")

    def shutdown(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"],
                       check=False, capture_output=True, timeout=30)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed")
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.shutdown()


def test_private_redis_restarted_under_load(stack: Stack, logs: Path,
                                            private_redis: PrivateRedis) -> None:
    stack.env["REDIS_URL"] = private_redis.url
    down: dict[str, float] = {}

    def restart() -> None:
        private_redis.shutdown()
        stopped = time.monotonic()
        time.sleep(2.0)
        private_redis.start()
        down["down_seconds"] = round(time.monotonic() - stopped, 2)

    outcome = _run_with_restart(stack, logs, "predisr-", restart)
    figures.record("private_redis_restart", **outcome, **down)
