"""DBOS Transact under the same workloads as sched, run by the DBOS virtualenv's python.

``python dbos_peer.py POSTGRES_URL`` launches DBOS on that (fresh) system database and reads
commands from stdin, answering each with one JSON line (the protocol of sched_client.py):
``warmup``, ``w1 N`` (N workflows started as fast as the client can, 32 concurrent starts,
then every result awaited), ``w2 N`` (one at a time, start to result).

The workflow is an ``async`` ``@DBOS.workflow()`` calling three ``@DBOS.step()``s in
sequence, each doing what sched's bench activity does (``n + 1``): a step's result is
checkpointed in the database before the next step runs, as sched records each activity.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from dbos import DBOS

CONCURRENT_STARTS = 32


@DBOS.step()  # type: ignore[untyped-decorator]
async def step(n: int) -> int:
    return n + 1


@DBOS.workflow()  # type: ignore[untyped-decorator]
async def three_steps(n: int) -> int:
    for _ in range(3):
        n = await step(n)
    return n


async def w1(count: int) -> dict[str, Any]:
    handles: list[Any] = []
    queue = list(range(count))

    async def starter() -> None:
        while queue:
            handles.append(await DBOS.start_workflow_async(three_steps, queue.pop()))

    started = time.time()
    await asyncio.gather(*(starter() for _ in range(CONCURRENT_STARTS)))
    all_started = time.time()
    results = await asyncio.gather(*(h.get_result() for h in handles))
    finished = time.time()
    bad = sum(1 for i, r in enumerate(results) if not isinstance(r, int))
    return {"first_start": started, "all_started": all_started, "last_result": finished,
            "not_completed": bad}


async def w2(count: int) -> dict[str, Any]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        handle = await DBOS.start_workflow_async(three_steps, i)
        assert await handle.get_result() == i + 3
        latencies.append((time.perf_counter() - started) * 1000)
    return {"latencies_ms": latencies}


async def serve() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        words = line.split()
        if not words or words[0] == "quit":
            return
        n = int(words[1]) if len(words) > 1 else 0
        try:
            if words[0] == "warmup":
                out: dict[str, Any] = {"result": await (
                    await DBOS.start_workflow_async(three_steps, 0)).get_result()}
            elif words[0] == "w1":
                out = await w1(n)
            elif words[0] == "w2":
                out = await w2(n)
            else:
                raise ValueError(f"unknown command {words[0]!r}")
        except Exception as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"done": words[0], **out}), flush=True)


def main() -> None:
    from importlib.metadata import version

    DBOS(config={"name": "sched-bench", "system_database_url": sys.argv[1],
                 "log_level": "WARNING"})
    DBOS.launch()
    print(json.dumps({"ready": True, "dbos": version("dbos")}), flush=True)
    try:
        asyncio.run(serve())
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()
