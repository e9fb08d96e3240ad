"""What the test engine's process is given of the test process's environment
(``sdk.testing._engine.engine_environment``): sched's settings of its own, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdk.testing._engine import engine_environment

ROOT = Path(__file__).resolve().parents[2]


def test_the_users_settings_stay_behind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "shop.settings")
    monkeypatch.setenv("DATABASE_URL", "postgres://shop@db/shop")
    monkeypatch.setenv("REDIS_URL", "redis://cache/0")
    monkeypatch.setenv("SCHED_SECRET_KEY", "the user's own secret")
    monkeypatch.setenv("SCHED_DATA_DIR", "/var/lib/shop")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-x")
    monkeypatch.setenv("SHOP_FLAG", "kept")
    env = engine_environment(tmp_path, {"SCHED_LOG_LEVEL": "DEBUG"})
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "PYTEST_ADDOPTS"):
        assert name not in env
    assert env["SCHED_DATA_DIR"] == str(tmp_path)
    assert env["SCHED_SECRET_KEY"] != "the user's own secret"
    assert len(env["SCHED_SECRET_KEY"]) >= 50
    assert env["SCHED_LOG_LEVEL"] == "DEBUG"  # what the test asked for wins
    assert env["SHOP_FLAG"] == "kept"        # anything else is passed on


def test_a_source_checkout_runs_its_own_engine(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = engine_environment(tmp_path, None)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]  # ours first
