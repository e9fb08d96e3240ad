"""The chaos suite: real engine and worker processes killed, paused and cut off from their
servers. Every test here is marked ``chaos`` (``make chaos``; excluded from ``make test``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, running_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)


def on_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))


def on_redis() -> bool:
    return os.environ.get("REDIS_URL", "").startswith("redis")


needs_postgres = pytest.mark.skipif(not on_postgres(), reason="needs DATABASE_URL=postgres://...")
needs_postgres_and_redis = pytest.mark.skipif(
    not (on_postgres() and on_redis()),
    reason="two engines need a shared PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")


# The harness's timeouts are tuned for fast failure paths on an idle engine. Under the chaos
# workloads an engine's backlog can delay a worker's pings by seconds, so leases here are
# closer to production's (still well under the defaults, to keep the suite short).
CHAOS_ENV = {
    "SCHED_LEASE_TIMEOUT_SECONDS": "10",
    "SCHED_WORKFLOW_TASK_TIMEOUT_SECONDS": "10",
    "SCHED_WORKER_HEARTBEAT_SECONDS": "1",
    "SCHED_LOG_LEVEL": "WARNING",
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as s:
        s.env.update(CHAOS_ENV)
        yield s


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path
