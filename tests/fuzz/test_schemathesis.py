"""schemathesis against a real engine's ``/api/schema/``: no 5xx, and every response
matches the schema. Marked ``chaos`` (``make chaos`` and CI): it takes a minute or two.

``SCHEMATHESIS_EXAMPLES`` (default 100) bounds the test cases per operation. A request may
long-poll (``wait``, clamped to 60 s by design), hence the long request timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.chaos import figures
from tests.e2e.harness import Stack, make_stack

pytestmark = pytest.mark.chaos

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")
# A query's and an update's 504 (``no_worker``, ``query_timeout``, ``update_timeout``) is
# documented: no worker serves the run, or none answered in time. The engine gives up on
# finding a worker at once here.
CONFIG = """
[[operations]]
include-path = "/api/workflows/{workflow_id}/queries/{name}"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]

[[operations]]
include-path = "/api/workflows/{workflow_id}/updates/{name}"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]
"""


def test_api_survives_schemathesis(tmp_path: Path) -> None:
    stack: Stack = make_stack(tmp_path)
    # Long polls of running runs answer after 1 s, not 60 (the test's time goes to cases).
    engine = stack.engine(log=tmp_path / "engine.log",
                          extra_env={"SCHED_QUERY_WORKER_WAIT_SECONDS": "0",
                                     "SCHED_MAX_WAIT_SECONDS": "1"})
    report = tmp_path / "report.json"
    (tmp_path / "schemathesis.toml").write_text(CONFIG)  # read from its working folder
    try:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run",
             f"{engine.url}/api/schema/", "--url", engine.url,
             "-H", f"Authorization: Bearer {stack.token}",
             "--checks", CHECKS,
             "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES") or "100",
             "--request-timeout", "70",
             "--workers", "1", "--seed", os.environ.get("CHAOS_SEED") or "1",
             "--generation-database", "none", "--no-color",
             "--report", "json", "--report-json-path", str(report)],
            capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"},
            cwd=tmp_path)  # schemathesis keeps a cache (.schemathesis/) in its working folder
        # Over the size limit, a body is refused with a clear error, not read.
        too_big = httpx.post(f"{engine.url}/api/workflows",
                             headers={"Authorization": f"Bearer {stack.token}",
                                      "Content-Type": "application/json"},
                             content=b'{"workflow_type":"x","input":"' + b"x" * 3_000_000 + b'"}')
    finally:
        engine.stop()
        stack.close()
    cases = _cases(report)
    figures.record("schemathesis", exit_code=run.returncode, test_cases=cases)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert too_big.status_code == 413
    assert "too large" in too_big.json()["error"]["message"]


def _cases(report: Path) -> int | None:
    try:
        return int(json.loads(report.read_text())["test_cases"]["generated"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
