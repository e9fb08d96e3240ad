from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sdk

from .harness import Engine, Proc, Stack, running_stack

MODULE = "tests.e2e.e2e_workflows"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("e2e")) as s:
        yield s


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def engine(stack: Stack, logs: Path) -> Iterator[Engine]:
    e = stack.engine(log=logs / "engine.log")
    yield e
    e.stop()


@pytest.fixture(scope="session")
def worker(stack: Stack, engine: Engine, logs: Path) -> Iterator[Proc]:
    w = stack.worker(MODULE, engine=engine, log=logs / "worker.log",
                     extra_env={"E2E_WORKER_NAME": "default-worker"})
    yield w
    w.stop()


@pytest.fixture
def client(stack: Stack, engine: Engine, worker: Proc) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token) as c:
        yield c
