"""Deployment defaults: ``manage.py check --deploy`` passes with the documented production
settings (docs/production.env), fails without them, and the engine refuses hosts it was not
told about outside debug."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def documented_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (ROOT / "docs" / "production.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    env["SCHED_SECRET_KEY"] = secrets.token_urlsafe(50)
    env["SCHED_METRICS_TOKEN"] = secrets.token_urlsafe(24)
    return env


def check_deploy(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    base.update(PYTHONPATH=str(ROOT), SCHED_DATA_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy",
                           "--fail-level", "WARNING"], cwd=ROOT, env=base, text=True,
                          capture_output=True, timeout=120)


def test_check_deploy_passes_with_the_documented_settings(tmp_path: Path) -> None:
    done = check_deploy(documented_env(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize("dropped", ["SCHED_SECURE_COOKIES", "SCHED_HSTS_SECONDS",
                                     "SCHED_SSL_REDIRECT"])
def test_check_deploy_fails_without_one_of_them(tmp_path: Path, dropped: str) -> None:
    env = documented_env()
    del env[dropped]
    done = check_deploy(env, tmp_path)
    assert done.returncode != 0
    assert "security.W" in done.stdout + done.stderr


def test_no_wildcard_host_outside_debug_by_default() -> None:
    code = ("from schedproject.config import load; import json; "
            "print(json.dumps(list(load().allowed_hosts)))")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                         capture_output=True, timeout=60,
                         env={**base, "PYTHONPATH": str(ROOT)}).stdout
    assert "*" not in out and "127.0.0.1" in out and "localhost" in out
    debug = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                           capture_output=True, timeout=60,
                           env={**base, "PYTHONPATH": str(ROOT), "SCHED_DEBUG": "true"}).stdout
    assert '"*"' in debug
