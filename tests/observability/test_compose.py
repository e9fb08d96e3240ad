"""compose.yaml: parsed and checked here; ``docker compose config`` too where it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
    return {name: s for name, s in compose["services"].items()
            if profile in (s.get("profiles") or [None])}


def test_the_default_stack(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"postgres", "redis", "migrate", "engine-1", "engine-2",
                                      "lb", "worker"}
    assert set(services(compose, "tracing")) == {"otel-collector", "jaeger"}
    s = compose["services"]
    assert s["postgres"]["image"] == "postgres:16" and s["redis"]["image"] == "redis:7"
    for name in ("postgres", "redis", "engine-1", "engine-2", "lb"):
        assert s[name]["healthcheck"]["test"], name


def test_two_engines_behind_one_port(compose: dict[str, Any]) -> None:
    s = compose["services"]
    for name in ("engine-1", "engine-2"):
        engine = s[name]
        assert "runengine --host 0.0.0.0 --port 8000" in engine["command"][-1]
        assert "ports" not in engine  # reached through the load balancer only
        assert engine["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"}}
        env = engine["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"]
        assert "SCHED_OTLP_ENDPOINT" in env
    assert s["lb"]["ports"] == ["${SCHED_PORT:-8000}:8000"]
    assert set(s["lb"]["depends_on"]) == {"engine-1", "engine-2"}
    conf = (ROOT / "docs/compose/nginx.conf").read_text()
    assert "server engine-1:8000" in conf and "server engine-2:8000" in conf
    assert "Upgrade $http_upgrade" in conf  # the worker websocket goes through


def test_the_public_edge_serves_no_metrics_and_bounds_bodies() -> None:
    conf = (ROOT / "docs/compose/nginx.conf").read_text()
    # nginx matches the decoded, slash-merged path: /metrics, //metrics, /%6detrics alike.
    assert re.search(r"location = /metrics \{\s*return 404;\s*\}", conf)
    assert re.search(r"merge_slashes\s+off", conf) is None
    assert "client_max_body_size 4m;" in conf  # daphne buffers a whole body before sched


def test_migrate_runs_once_and_the_worker_serves_the_demo_workflows(
        compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert s["migrate"]["restart"] == "no"
    assert "manage.py migrate" in s["migrate"]["command"][-1]
    assert "fixtures.demo_workflows" in s["worker"]["command"][-1]
    assert s["worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"}
    for name in ("migrate", "engine-1", "engine-2", "worker"):
        assert s[name]["build"] == "."
    # No secret is written into the file: the key and the token live in a volume.
    assert compose["x-sched"]["environment"]["SCHED_SECRET_KEY"] == "${SCHED_SECRET_KEY:-}"
    assert (ROOT / "Dockerfile").read_text().startswith("#")
    assert "python:3.11-slim" in (ROOT / "Dockerfile").read_text()


def test_the_tracing_profile(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert s["otel-collector"]["image"].startswith("otel/opentelemetry-collector")
    assert s["jaeger"]["image"].startswith("jaegertracing/all-in-one")
    collector = yaml.safe_load((ROOT / "docs/compose/otel-collector.yaml").read_text())
    assert collector["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger"]
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_it() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    for profile in ([], ["--profile", "tracing"]):
        result = subprocess.run([*command, "-f", str(COMPOSE), *profile, "config", "-q"],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, result.stderr
