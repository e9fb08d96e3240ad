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


def _list(name: str, default: str) -> tuple[str, ...]:
    raw = os.environ.get(name) or default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _proxy_ssl_header() -> tuple[str, str] | None:
    raw = os.environ.get("SCHED_PROXY_SSL_HEADER") or ""
    if not raw:
        return None
    header, sep, value = raw.partition(":")
    if not sep or not header.strip() or not value.strip():
        raise ConfigError("SCHED_PROXY_SSL_HEADER must be 'Header-Name: value', "
                          f"e.g. 'X-Forwarded-Proto: https', not {raw!r}")
    return "HTTP_" + header.strip().upper().replace("-", "_"), value.strip()


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
    # Task frames of one worker socket applied side by side (SCHED_SOCKET_CONCURRENCY; by
    # default 8 x SCHED_DB_THREADS on PostgreSQL, so that frames queue for group commit, and
    # 1 on SQLite, whose writers queue on one lock).
    socket_concurrency: int
    # The lean path of the start and result calls (workflows.api.fast); SCHED_LEAN_API=0
    # sends every request through Django's full request cycle.
    lean_api: bool
    # Dispatch shards (PostgreSQL): runs hash into this many shards, each leased by whichever
    # engine leads it (SCHED_DISPATCH_SHARDS, by default 1: each shard's loop ticks on every
    # wake-up, which under W1 cost more than it gave; always 1 on SQLite).
    dispatch_shards: int
    # Worker sockets' flow control (dispatch.keeper): the most tasks of each kind one socket
    # may hold, whatever it advertises; the bytes buffered unsent on a socket above which it
    # is given no new task, and above which it is closed.
    max_worker_credit: int
    send_buffer_pause_bytes: int
    send_buffer_close_bytes: int
    # Long polls (``result?wait=``, ``history?wait=``) one engine process holds at once; one
    # more is answered 503 ``too_many_waiters`` with ``Retry-After``.
    max_waiters: int
    # Behind a TLS proxy: the header (as Django's META key) and value that mark a request
    # that came over HTTPS; SCHED_PROXY_SSL_HEADER="X-Forwarded-Proto: https".
    proxy_ssl_header: tuple[str, str] | None
    csrf_trusted_origins: tuple[str, ...]
    secure_cookies: bool
    ssl_redirect: bool
    hsts_seconds: int
    hsts_preload: bool
    # /metrics: with a token, only ``Authorization: Bearer <token>`` may scrape it.
    metrics_token: str | None
    # Failed logins (dashboard and admin) per user name and client address before that pair
    # is refused for ``login_lockout_seconds``.
    login_attempts: int
    login_lockout_seconds: float
    # Distinct workflow types, task queues and activity types each metric label takes as
    # themselves (the first seen by this process); later ones are counted as ``other``.
    metrics_label_values: int
    # Tracing: spans go to this OTLP/HTTP collector (e.g. http://otel-collector:4318); unset,
    # tracing is off and costs nothing.
    otlp_endpoint: str | None
    # Queries (dispatch.queries): how long a query waits for a connected worker serving the
    # run's queue and type before it answers 504 ``no_worker``, and for that worker's answer
    # before it answers 504 ``query_timeout``.
    query_worker_wait_seconds: float = 3.0
    query_timeout_seconds: float = 10.0
    # Updates (dispatch.updates): how long an accepted update's caller waits for the
    # workflow's handler to complete it before it answers 504 ``update_timeout`` (the update
    # stays accepted: the same ``update_id`` asked again waits on).
    update_timeout_seconds: float = 30.0
    # The HTTP door (dispatch.httpdoor): a request's headers and body must arrive within
    # this, or it is answered 408 and its connection closed.
    http_receive_timeout_seconds: float = 30.0
    # The longest a long poll (``wait=``) waits; longer waits asked for are clamped to it
    # (below a proxy's idle timeout, say).
    max_wait_seconds: float = 60.0

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
        # Outside debug, no wildcard by default: the local addresses only.
        allowed_hosts=_list("SCHED_ALLOWED_HOSTS", "*" if debug else "localhost,127.0.0.1,[::1]"),
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
        db_threads=(threads := int(_number("SCHED_DB_THREADS", 4 if on_postgres else 2,
                                           minimum=1))),
        socket_concurrency=int(_number("SCHED_SOCKET_CONCURRENCY",
                                       8 * threads if on_postgres else 1, minimum=1)),
        lean_api=_bool("SCHED_LEAN_API", True),
        dispatch_shards=int(_number("SCHED_DISPATCH_SHARDS", 1, minimum=1))
        if on_postgres else 1,
        max_worker_credit=int(_number("SCHED_MAX_WORKER_CREDIT", 200, minimum=1)),
        send_buffer_pause_bytes=int(_number("SCHED_SEND_BUFFER_PAUSE_BYTES", 8 * 1024 * 1024,
                                            minimum=1024)),
        send_buffer_close_bytes=int(_number("SCHED_SEND_BUFFER_CLOSE_BYTES",
                                            64 * 1024 * 1024, minimum=1024)),
        otlp_endpoint=os.environ.get("SCHED_OTLP_ENDPOINT") or None,
        max_waiters=int(_number("SCHED_MAX_WAITERS", 200, minimum=0)),
        proxy_ssl_header=_proxy_ssl_header(),
        csrf_trusted_origins=_list("SCHED_CSRF_TRUSTED_ORIGINS", ""),
        secure_cookies=_bool("SCHED_SECURE_COOKIES", False),
        ssl_redirect=_bool("SCHED_SSL_REDIRECT", False),
        hsts_seconds=int(_number("SCHED_HSTS_SECONDS", 0)),
        hsts_preload=_bool("SCHED_HSTS_PRELOAD", False),
        metrics_token=os.environ.get("SCHED_METRICS_TOKEN") or None,
        login_attempts=int(_number("SCHED_LOGIN_ATTEMPTS", 5, minimum=1)),
        login_lockout_seconds=_number("SCHED_LOGIN_LOCKOUT_SECONDS", 900, minimum=1),
        metrics_label_values=int(_number("SCHED_METRICS_LABEL_VALUES", 100, minimum=1)),
        query_worker_wait_seconds=_number("SCHED_QUERY_WORKER_WAIT_SECONDS", 3),
        query_timeout_seconds=_number("SCHED_QUERY_TIMEOUT_SECONDS", 10, minimum=0.1),
        update_timeout_seconds=_number("SCHED_UPDATE_TIMEOUT_SECONDS", 30, minimum=0.1),
        http_receive_timeout_seconds=_number("SCHED_HTTP_RECEIVE_TIMEOUT_SECONDS", 30,
                                             minimum=0.1),
        max_wait_seconds=_number("SCHED_MAX_WAIT_SECONDS", 60, minimum=0),
    )


def get() -> SchedConfig:
    """The running engine's configuration (``settings.SCHED``), typed.

    Read at call time, so a test that overrides ``settings.SCHED`` is seen at once.
    """
    config = settings.SCHED
    assert isinstance(config, SchedConfig)
    return config
