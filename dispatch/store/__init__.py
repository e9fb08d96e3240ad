"""The dispatch tables, written here alone: task rows and leases (``tasks``), worker
sessions (``sessions``), engine processes (``engines``) and leadership terms
(``leadership``).

Services read and write them through these functions, never through the models, so the
task state machine and the lease check exist once.
"""

from __future__ import annotations

from . import engines, sessions, tasks
from .leadership import Leadership, NotLeader, Shard, check_term
from .sessions import WorkerSession
from .tasks import Task, TaskKind, TaskState, execution_id_from_token, new_token

__all__ = ["Leadership", "NotLeader", "Shard", "Task", "TaskKind", "TaskState", "WorkerSession",
           "check_term", "engines", "execution_id_from_token", "new_token", "sessions", "tasks"]
