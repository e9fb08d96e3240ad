"""Testing workflows: an engine of the test's own with time skipping, and a replayer.

- ``WorkflowEnvironment``: ``await WorkflowEnvironment.start_time_skipping()`` (or
  ``start_local()``; ``..._sync()`` from sync code) runs sched's engine in a child process on
  a SQLite file of its own; ``env.client``, ``env.worker(...)``, ``env.sleep(seconds)``.
- ``Replayer(workflows).replay(history)``: raises ``sdk.NonDeterminismError`` when the code
  no longer matches an exported history.
- ``sdk.testing.pytest_plugin``: the ``workflow_environment`` and ``replayer`` fixtures
  (loaded by pytest through sched's ``pytest11`` entry point).

See "Testing workflows" in docs/sdk.md.
"""

from __future__ import annotations

from sdk._errors import NonDeterminismError

from ._engine import EngineExited
from ._environment import EnvironmentWorker, WorkflowEnvironment
from ._replayer import Replayer, ReplayFailureError

__all__ = [
    "EngineExited",
    "EnvironmentWorker",
    "NonDeterminismError",
    "ReplayFailureError",
    "Replayer",
    "WorkflowEnvironment",
]
