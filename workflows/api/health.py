"""``/healthz``: can this engine reach its database and (when configured) Redis?"""

from __future__ import annotations

import logging

from django.db import connection

from schedproject import config

log = logging.getLogger("sched.health")
REDIS_TIMEOUT_SECONDS = 1.0


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def check_redis(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                  socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def health_checks() -> tuple[bool, dict[str, str]]:
    """``(healthy, {check: "ok" or the reason it failed})``."""
    checks: dict[str, str] = {}
    probes = [("database", check_database)]
    redis_url = config.get().redis_url
    if redis_url:
        probes.append(("redis", lambda: check_redis(redis_url)))
    for name, probe in probes:
        try:
            checks[name] = probe()
        except Exception as exc:
            log.warning("health check %s failed: %s", name, exc)
            checks[name] = f"failed: {type(exc).__name__}"
    return all(v == "ok" for v in checks.values()), checks
