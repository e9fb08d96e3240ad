"""The bench's client of sched, run as a script by the interpreter of the checkout measured
(``PYTHONPATH`` = that checkout, so its ``sdk`` is the one imported).

``python sched_client.py ENGINE_URL[,ENGINE_URL...] TOKEN`` reads one command a line from stdin
and answers each with one JSON line on stdout, so the bench can read CPU counters between
commands (with several engines, the W1 and W3 starts are spread over them):

- ``warmup``: one workflow, start to result (the worker is connected and serving).
- ``w1 N`` / ``w3 N``: start N ``three_steps`` / ``sleep_one`` workflows as fast as it can
  (32 concurrent starts); answers when all are started (the bench watches them close).
- ``w2 N``: N ``three_steps`` one at a time, start to result; answers with the latencies.
- ``w4 N``: one ``long_history`` workflow of N activities, start to result.
- ``w1l N`` / ``w2l N``: ``w1`` / ``w2`` with ``three_local_steps`` (local activities).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import sdk

CONCURRENT_STARTS = 32


async def start_many(clients: list[Any], workflow: str, inputs: list[Any], prefix: str) -> None:
    """The starts, ``CONCURRENT_STARTS`` at a time, spread over the engines' clients."""
    queue = list(enumerate(inputs))

    async def starter(client: Any) -> None:
        while queue:
            i, value = queue.pop()
            await client.start_workflow(workflow, value, workflow_id=f"{prefix}-{i}")

    await asyncio.gather(*(starter(clients[k % len(clients)])
                           for k in range(CONCURRENT_STARTS)))


def run(engine: str, token: str, command: str, n: int) -> dict[str, Any]:
    if command in ("w1", "w1l", "w3"):
        workflow = {"w1": "three_steps", "w1l": "three_local_steps",
                    "w3": "sleep_one"}[command]
        inputs: list[Any] = [1.0] * n if command == "w3" else list(range(n))

        async def go() -> None:
            clients = [sdk.AsyncClient(url, token=token) for url in engine.split(",")]
            try:
                await start_many(clients, workflow, inputs, workflow)
            finally:
                for client in clients:
                    await client.aclose()

        started = time.time()
        asyncio.run(go())
        return {"first_start": started, "all_started": time.time()}
    with sdk.Client(engine.split(",")[0], token=token) as client:
        if command == "warmup":
            client.start_workflow("three_steps", 0, workflow_id="warmup").result(timeout=60)
            return {}
        if command in ("w2", "w2l"):
            workflow = "three_steps" if command == "w2" else "three_local_steps"
            latencies = []
            for i in range(n):
                started = time.perf_counter()
                client.start_workflow(workflow, i, workflow_id=f"{command}-{i}").result(
                    timeout=60)
                latencies.append((time.perf_counter() - started) * 1000)
            return {"latencies_ms": latencies}
        if command == "w4":
            result = client.start_workflow("long_history", n, workflow_id="w4").result(
                timeout=1200)
            return {"result": result}
    raise ValueError(f"unknown command {command!r}")


def main() -> None:
    engine, token = sys.argv[1], sys.argv[2]
    print(json.dumps({"ready": True, "sdk": sdk.__file__}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        n = int(words[1]) if len(words) > 1 else 0
        try:
            out = run(engine, token, words[0], n)
        except Exception as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"done": words[0], **out}), flush=True)


if __name__ == "__main__":
    main()
