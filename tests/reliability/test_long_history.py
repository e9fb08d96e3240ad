"""A history of 20,000 events and about 10 MB replays on a fresh worker: the engine sends it
in pages (``history`` frames of at most ``HISTORY_PAGE_EVENTS`` events), never in one frame."""

from __future__ import annotations

from pathlib import Path

import sdk
from tests.e2e.harness import Stack, wait_for

from .conftest import MODULE

SPEC = {"rounds": 40, "per_round": 500, "size": 480}


# Production's timeouts: replaying 20,000 events takes the worker seconds of CPU, during
# which it does not ping (the harness's 3 s lease is for fast failure paths). A stack of its
# own: on SQLite one engine per database runs the loops.
TIMEOUTS = {"SCHED_LEASE_TIMEOUT_SECONDS": "30", "SCHED_WORKFLOW_TASK_TIMEOUT_SECONDS": "10"}


def test_a_20000_event_10_mb_history_replays_on_a_fresh_worker(stack: Stack,
                                                               logs: Path) -> None:
    engine = stack.engine(log=logs / "long-engine.log", extra_env=TIMEOUTS)
    builder = stack.worker(MODULE, task_queue="long", engine=engine, log=logs / "builder.log")
    fresh = None
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handle = client.start_workflow("long_history", SPEC, task_queue="long")
            wait_for(lambda: handle.describe()["history_length"] > 20_000, timeout=600,
                     interval=1.0)
            wait_for(lambda: not handle.describe()["pending_timers"], timeout=60)
            builder.stop()
            fresh_log = logs / "fresh.log"
            fresh = stack.worker(MODULE, task_queue="long", engine=engine, log=fresh_log)
            handle.signal("go")
            result = handle.result(timeout=300)
            size = sum(len(str(e)) for e in handle.history())
    finally:
        builder.stop()
        if fresh is not None:
            fresh.stop()
        engine.stop()
    # ctx.info() tells the workflow how long its history is, and to continue as new.
    assert result == {"replayed": False, "past_20000": True, "past_10_mb": True,
                      "suggested": True}
    assert size > 10_000_000
    assert "long history" in fresh_log.read_text()  # past 10,000 events: the worker warns
