"""The Celery application of the bench (worker: ``celery -A celery_app worker``).

Broker and result backend are Redis (``SCHED_BENCH_CELERY_REDIS``); the queue name
(``SCHED_BENCH_CELERY_QUEUE``) is fresh for every run, so nothing else on that Redis is
touched, and results expire after ten minutes.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS = os.environ.get("SCHED_BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("SCHED_BENCH_CELERY_QUEUE", "sched-bench")

app = Celery("sched_bench", broker=REDIS, backend=REDIS)
app.conf.update(task_default_queue=QUEUE, result_expires=600, task_serializer="json",
                result_serializer="json", accept_content=["json"],
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task  # type: ignore[untyped-decorator]
def step(n: int) -> int:
    return n + 1
