"""GET /healthz: the database (and Redis, when configured) answer."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthy(settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, redis_url=None)
    r = Client().get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok"}}


def test_database_down_is_503(monkeypatch: Any, settings: Any) -> None:
    from workflows.api import health

    settings.SCHED = dataclasses.replace(settings.SCHED, redis_url=None)
    def down() -> str:
        raise ConnectionError("db gone")

    monkeypatch.setattr(health, "check_database", down)
    r = Client().get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "failing"
    assert body["checks"]["database"].startswith("failed")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_redis_is_503(settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED,
                                         redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    r = Client().get("/healthz")
    assert r.status_code == 503
    assert r.json()["checks"] == {"database": "ok", "redis": "failed: ConnectionError"}


def test_reachable_redis_is_checked(settings: Any, monkeypatch: Any) -> None:
    import redis

    pinged: list[bool] = []

    def ping(self: Any) -> bool:
        pinged.append(True)
        return True

    monkeypatch.setattr(redis.Redis, "ping", ping)
    settings.SCHED = dataclasses.replace(settings.SCHED, redis_url="redis://127.0.0.1:1/0")
    r = Client().get("/healthz")
    assert r.status_code == 200 and pinged
    assert r.json()["checks"] == {"database": "ok", "redis": "ok"}
