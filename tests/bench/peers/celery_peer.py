"""Celery under the same workloads as sched, run by the Celery virtualenv's python.

``python celery_peer.py`` (the worker runs apart, started by the bench) reads commands from
stdin, answering each with one JSON line (the protocol of sched_client.py): ``warmup``,
``w1 N`` (N chains sent as fast as the client can, then every result awaited), ``w2 N`` (one
at a time, send to result).

A workflow is ``chain(step.s(n), step.s(), step.s())``: three tasks in sequence, each doing
what sched's bench activity does (``n + 1``). Not durable: a chain's progress lives in Redis
messages and results, nothing is recorded in a database, and a task lost with its worker
is not retried (acks are early, Celery's default).
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from typing import Any

from celery import chain
from celery_app import step


def three_steps(n: int) -> Any:
    return chain(step.s(n), step.s(), step.s()).apply_async()


def main() -> None:
    print(json.dumps({"ready": True, "celery": version("celery")}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        n = int(words[1]) if len(words) > 1 else 0
        try:
            out: dict[str, Any] = {}
            if words[0] == "warmup":
                out["result"] = three_steps(0).get(timeout=120)
            elif words[0] == "w1":
                started = time.time()
                results = [three_steps(i) for i in range(n)]
                all_started = time.time()
                bad = sum(1 for i, r in enumerate(results) if r.get(timeout=600) != i + 3)
                out = {"first_start": started, "all_started": all_started,
                       "last_result": time.time(), "not_completed": bad}
            elif words[0] == "w2":
                latencies = []
                for i in range(n):
                    t = time.perf_counter()
                    assert three_steps(i).get(timeout=60) == i + 3
                    latencies.append((time.perf_counter() - t) * 1000)
                out = {"latencies_ms": latencies}
            else:
                raise ValueError(f"unknown command {words[0]!r}")
        except Exception as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"done": words[0], **out}), flush=True)


if __name__ == "__main__":
    main()
