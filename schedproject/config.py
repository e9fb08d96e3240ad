"""sched's settings, read once from the environment.

Everything an operator sets is an environment variable (12-factor); README.md lists them.
``load()`` parses and validates them into one typed object, kept as ``settings.SCHED``;
Django's settings module reads from it, and sched's own code reads it through ``get()``
(typed), never ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """An environment variable holds a value sched cannot use."""


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _number(name: str, default: float, *, minimum: float = 0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value.lower() not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value.lower()


@dataclass(frozen=True)
class SchedConfig:
    debug: bool
    secret_key: str | None
    database_url: str | None
    redis_url: str | None
    data_dir: Path
    log_level: str
    log_format: str
    max_payload_bytes: int
    allowed_hosts: tuple[str, ...]
    # Dispatch and timers.
    lease_timeout_seconds: float
    worker_heartbeat_seconds: float
    workflow_task_timeout_seconds: float
    dispatch_poll_seconds: float
    leader_check_seconds: float
    shutdown_grace_seconds: float
    # An engine beats every engine_heartbeat_seconds; one silent for engine_timeout_seconds
    # is dead, and so are the sessions it served. Sessions of an engine that died on this
    # host (its pid is gone) are released after resume_grace_seconds, the time a
    # reconnecting worker has to take its leases over (``Hello.resume_worker_id``).
    engine_heartbeat_seconds: float
    engine_timeout_seconds: float
    resume_grace_seconds: float
    run_loops: bool
    # Threads for the worker sockets' database work (their transitions), each with its own
    # connection; SCHED_DB_THREADS, by default 4 on PostgreSQL and 2 on SQLite.
    db_threads: int
    # Tracing: spans go to this OTLP/HTTP collector (e.g. http://otel-collector:4318); unset,
    # tracing is off and costs nothing.
    otlp_endpoint: str | None

    @property
    def uses_postgres(self) -> bool:
        url = self.database_url or ""
        return url.startswith(("postgres", "pgsql"))


def load() -> SchedConfig:
    debug = _bool("SCHED_DEBUG", False)
    database_url = os.environ.get("DATABASE_URL") or None
    # On SQLite writers queue on one process lock (schedproject.transactions), so more
    # threads only overlap reads and the Python around the writes; on PostgreSQL independent
    # runs' transitions proceed side by side.
    on_postgres = (database_url or "").startswith(("postgres", "pgsql"))
    return SchedConfig(
        debug=debug,
        secret_key=os.environ.get("SCHED_SECRET_KEY") or None,
        database_url=database_url,
        redis_url=os.environ.get("REDIS_URL") or None,
        data_dir=Path(os.environ.get("SCHED_DATA_DIR") or BASE_DIR / "data"),
        log_level=_choice("SCHED_LOG_LEVEL", "INFO",
                          ("debug", "info", "warning", "error", "critical")).upper(),
        log_format=_choice("SCHED_LOG_FORMAT", "text", ("text", "json")),
        max_payload_bytes=int(_number("SCHED_MAX_PAYLOAD_BYTES", 2 * 1024 * 1024, minimum=1024)),
        allowed_hosts=tuple(
            h.strip() for h in (os.environ.get("SCHED_ALLOWED_HOSTS") or "*").split(",")
            if h.strip()
        ),
        lease_timeout_seconds=_number("SCHED_LEASE_TIMEOUT_SECONDS", 30, minimum=1),
        worker_heartbeat_seconds=_number("SCHED_WORKER_HEARTBEAT_SECONDS", 5, minimum=0.1),
        workflow_task_timeout_seconds=_number("SCHED_WORKFLOW_TASK_TIMEOUT_SECONDS", 10,
                                              minimum=0.1),
        dispatch_poll_seconds=_number("SCHED_DISPATCH_POLL_SECONDS", 1, minimum=0.01),
        leader_check_seconds=_number("SCHED_LEADER_CHECK_SECONDS", 2, minimum=0.1),
        shutdown_grace_seconds=_number("SCHED_SHUTDOWN_GRACE_SECONDS", 8, minimum=0),
        engine_heartbeat_seconds=_number("SCHED_ENGINE_HEARTBEAT_SECONDS", 1, minimum=0.1),
        engine_timeout_seconds=_number("SCHED_ENGINE_TIMEOUT_SECONDS", 5, minimum=0.5),
        resume_grace_seconds=_number("SCHED_RESUME_GRACE_SECONDS", 1, minimum=0),
        run_loops=_bool("SCHED_RUN_LOOPS", True),
        db_threads=int(_number("SCHED_DB_THREADS", 4 if on_postgres else 2, minimum=1)),
        otlp_endpoint=os.environ.get("SCHED_OTLP_ENDPOINT") or None,
    )


def get() -> SchedConfig:
    """The running engine's configuration (``settings.SCHED``), typed.

    Read at call time, so a test that overrides ``settings.SCHED`` is seen at once.
    """
    config = settings.SCHED
    assert isinstance(config, SchedConfig)
    return config
