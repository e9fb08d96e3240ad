"""pytest fixtures for workflow tests (sched's ``pytest11`` entry point loads this module;
without it, ``-p sdk.testing.pytest_plugin`` or ``pytest_plugins = [...]`` in a conftest).

- ``workflow_environment``: a time-skipping ``WorkflowEnvironment``, one per test session
  (an engine process starts in about a second; time only moves forward, so tests sharing it
  see a clock that has jumped for others' timers: give each test its own task queue and
  workflow ids, and compare times within one run);
- ``local_workflow_environment``: the same on wall time;
- ``replayer``: ``replayer(workflows)`` is an ``sdk.testing.Replayer`` of those workflows.

Nothing starts until a test asks for a fixture, so having the plugin loaded costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported when a fixture is used, not when pytest loads the plugin
    from sdk.testing import Replayer, WorkflowEnvironment

__all__ = ["local_workflow_environment", "replayer", "workflow_environment"]


@pytest.fixture(scope="session")
def workflow_environment() -> Iterator[WorkflowEnvironment]:
    """A time-skipping ``sdk.testing.WorkflowEnvironment`` for the session."""
    yield from _environment(time_skipping=True)


@pytest.fixture(scope="session")
def local_workflow_environment() -> Iterator[WorkflowEnvironment]:
    """A ``sdk.testing.WorkflowEnvironment`` on wall time, for the session."""
    yield from _environment(time_skipping=False)


def _environment(*, time_skipping: bool) -> Iterator[WorkflowEnvironment]:
    from sdk.testing import WorkflowEnvironment

    with (WorkflowEnvironment.start_time_skipping_sync() if time_skipping
          else WorkflowEnvironment.start_local_sync()) as env:
        yield env


@pytest.fixture
def replayer() -> Callable[[Iterable[Any]], Replayer]:
    """``replayer([my_workflow]).replay(history)``."""
    from sdk.testing import Replayer

    return Replayer
