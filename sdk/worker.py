"""``python -m sdk.worker``: run a worker for the workflows and activities of some modules.

    python -m sdk.worker --engine http://localhost:8000 --token T --task-queue default \\
        fixtures.demo_workflows path/to/more_workflows.py

Every ``@workflow`` and ``@activity`` found at the top level of the modules is registered.
SIGINT/SIGTERM shut the worker down gracefully; a second signal stops it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from sdk._activations import DEFAULT_DEADLOCK_TIMEOUT
from sdk._activity import ActivityDefinition
from sdk._tracing import configure_from_env as configure_tracing_from_env
from sdk._worker import Worker, WorkerAuthenticationError

logger = logging.getLogger("sched.worker")


def load_module(spec: str) -> ModuleType:
    """Import a dotted module name, or a ``.py`` file path (its folder joins ``sys.path``)."""
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        if not path.is_file():
            raise SystemExit(f"no such file: {spec}")
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = path.stem
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise SystemExit(f"cannot import {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(spec)


def collect(modules: Sequence[ModuleType]) -> tuple[list[Any], list[Any]]:
    """The decorated workflows and activities defined or imported at the modules' top level."""
    workflows: dict[int, Any] = {}
    activities: dict[int, Any] = {}
    for module in modules:
        for obj in vars(module).values():
            if getattr(obj, "__sched_workflow__", None) is not None:
                workflows[id(obj)] = obj
            if isinstance(getattr(obj, "__sched_activity__", None), ActivityDefinition):
                activities[id(obj)] = obj
    return list(workflows.values()), list(activities.values())


def load_codec(spec: str) -> Any:
    """The codec ``module:name`` names: the object itself, or what calling it returns when it
    is a class or function without ``encode``/``decode``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"--payload-codec must be MODULE:NAME, not {spec!r}")
    obj = getattr(load_module(module_name), attr, None)
    if obj is None:
        raise SystemExit(f"no {attr!r} in {module_name}")
    if isinstance(obj, type) or not callable(getattr(obj, "encode", None)):
        obj = obj()
    return obj


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sdk.worker",
        description="Run a sched worker for the workflows and activities of some modules.",
    )
    parser.add_argument("--engine", default=os.environ.get("SCHED_ENGINE_URL"),
                        help="the engine's URL (default: $SCHED_ENGINE_URL)")
    parser.add_argument("--token", default=os.environ.get("SCHED_TOKEN"),
                        help="the worker token (default: $SCHED_TOKEN)")
    parser.add_argument("--task-queue", default="default")
    parser.add_argument("--max-activities", type=int, default=100)
    parser.add_argument("--max-workflow-tasks", type=int, default=100)
    parser.add_argument("--identity", default=None)
    parser.add_argument("--local-activity-budget", type=float, default=8.0, metavar="SECONDS",
                        help="local activity time per workflow task; keep it below the "
                             "engine's SCHED_WORKFLOW_TASK_TIMEOUT_SECONDS")
    parser.add_argument("--deadlock-timeout", type=float, default=DEFAULT_DEADLOCK_TIMEOUT,
                        metavar="SECONDS",
                        help="fail a workflow task whose code does not yield for this long "
                             "(cause deadlock_detected); 0 turns the check off")
    parser.add_argument("--payload-codec", default=os.environ.get("SCHED_PAYLOAD_CODEC"),
                        metavar="MODULE:NAME",
                        help="a PayloadCodec (or a function returning one) to encode every "
                             "payload with (default: $SCHED_PAYLOAD_CODEC)")
    parser.add_argument("--log-level", default=os.environ.get("SCHED_LOG_LEVEL", "INFO"))
    parser.add_argument("modules", nargs="+", metavar="MODULE",
                        help="module names or .py files holding workflows and activities")
    args = parser.parse_args(argv)
    if not args.engine:
        parser.error("--engine (or SCHED_ENGINE_URL) is required")
    if not args.token:
        parser.error("--token (or SCHED_TOKEN) is required")
    if args.deadlock_timeout < 0:
        parser.error("--deadlock-timeout must be 0 (off) or more")
    return args


async def serve(worker: Worker, *, grace: float = 10.0) -> None:
    """Run ``worker`` until SIGINT/SIGTERM, then shut it down gracefully."""
    loop = asyncio.get_running_loop()
    shutdown_task: asyncio.Task[None] | None = None
    run_task = asyncio.create_task(worker.run())

    def on_signal(signum: int) -> None:
        nonlocal shutdown_task
        if shutdown_task is None:
            logger.info("received %s: shutting down (again to stop at once)",
                        signal.Signals(signum).name)
            shutdown_task = asyncio.create_task(worker.shutdown(grace))
        else:
            run_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # not on this platform / thread
            pass
    try:
        await run_task
    finally:
        if shutdown_task is not None and not run_task.cancelled():
            await shutdown_task


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, with the run a line is about when it names one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record), "level": record.levelname.lower(),
            "component": record.name.removeprefix("sched."), "message": record.getMessage(),
        }
        for name in ("workflow_id", "run_id", "worker_id", "task_queue", "cause"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """Text or JSON (``SCHED_LOG_FORMAT``) lines on stderr, as the engine writes them."""
    handler = logging.StreamHandler()
    if os.environ.get("SCHED_LOG_FORMAT", "text").lower() == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # The websockets library logs the handshake headers at DEBUG, the bearer token included.
    logging.getLogger("websockets").setLevel(max(logging.INFO, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    configure_tracing_from_env()
    modules = [load_module(spec) for spec in args.modules]
    workflows, activities = collect(modules)
    if not workflows and not activities:
        print("no @workflow or @activity found in the modules", file=sys.stderr)
        return 2
    worker = Worker(
        args.engine,
        token=args.token,
        task_queue=args.task_queue,
        workflows=workflows,
        activities=activities,
        max_concurrent_activities=args.max_activities,
        max_concurrent_workflow_tasks=args.max_workflow_tasks,
        identity=args.identity,
        local_activity_budget=args.local_activity_budget,
        deadlock_timeout=args.deadlock_timeout or None,
        payload_codec=load_codec(args.payload_codec) if args.payload_codec else None,
    )
    logger.info("worker for task queue %r: workflows %s, activities %s", args.task_queue,
                worker.workflow_types, worker.activity_types)
    try:
        asyncio.run(serve(worker))
    except WorkerAuthenticationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
