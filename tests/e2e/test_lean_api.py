"""The lean start and result path (workflows.api.fast) answers as the DRF views do.

Two engine processes on one database: one with the lean path (the default), one with
``SCHED_LEAN_API=0`` (every request through Django's request cycle). The same requests, good
and bad, get the same status, body and headers from both; a result long-poll on the lean
path is woken by the run's close; the requests it answers are counted in the metrics.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import Engine, Proc, Stack

HEADERS = ("content-type", "location", "allow", "vary", "x-frame-options",
           "x-content-type-options", "referrer-policy", "cross-origin-opener-policy")


@pytest.fixture(scope="module")
def reference(stack: Stack, logs: Path) -> Iterator[Engine]:
    e = stack.engine(log=logs / "reference-engine.log",
                     extra_env={"SCHED_LEAN_API": "0", "SCHED_RUN_LOOPS": "0"})
    yield e
    e.stop()


@pytest.fixture(scope="module")
def worker_token(stack: Stack) -> str:
    out = stack.manage("createtoken", "lean-worker", "--scope", "worker").stdout
    return out.strip().splitlines()[-1]


def _normal(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with run ids and this test's workflow ids replaced by stable names."""
    if isinstance(value, dict):
        return {k: _normal(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v, ids) for v in value]
    if isinstance(value, str):
        for real, name in ids.items():
            value = value.replace(real, name)
    return value


def _collect(value: Any, ids: dict[str, str]) -> None:
    """Name the engine's own values (run ids, times, generated workflow ids) found in ``value``."""
    if isinstance(value, dict):
        for key, v in value.items():
            if key in ("run_id", "closed_at", "workflow_id") and isinstance(v, str):
                ids.setdefault(v, f"<{key}>")
            _collect(v, ids)


def _answer(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    _collect(body, ids)
    headers = {h: response.headers.get(h) for h in HEADERS}
    return {"status": response.status_code, "body": _normal(body, ids),
            "headers": _normal(headers, ids)}


def _both(lean: Engine, reference: Engine, method: str, path: str, *,
          suffix_ids: bool = True, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same request to both engines; ``{id}`` in the path or the JSON body is replaced by
    an id of each engine's own (so a start does not collide with the other's)."""
    answers = []
    for engine, tag in ((lean, "lean"), (reference, "ref")):
        ids: dict[str, str] = {}
        real = f"parity-{tag}-{uuid.uuid4().hex[:8]}" if suffix_ids else "parity-shared"
        ids[real] = "<id>"
        args = dict(kwargs)
        if "json" in args and isinstance(args["json"], dict):
            args["json"] = {k: (real if v == "{id}" else v) for k, v in args["json"].items()}
        response = httpx.request(method, engine.url + path.replace("{id}", real), timeout=30,
                                 **args)
        answers.append(_answer(response, ids))
    return answers[0], answers[1]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_lean_and_django_answers_are_the_same(stack: Stack, engine: Engine,
                                              reference: Engine, worker_token: str) -> None:
    auth = _auth(stack.token)
    start = {"workflow_type": "nobody_serves_this", "workflow_id": "{id}",
             "task_queue": "lean-parity", "input": {"n": [1, 2.5, "x"]}}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/workflows", {"json": start, "headers": auth}),
        ("POST", "/api/workflows", {"json": {**start, "execution_timeout": 12.5},
                                    "headers": auth}),
        ("POST", "/api/workflows", {"json": {"workflow_type": "t", "input": None,
                                             "task_queue": "lean-parity"},
                                    "headers": auth}),
        ("POST", "/api/workflows", {"json": start}),
        ("POST", "/api/workflows", {"json": start, "headers": _auth("sched_nope")}),
        ("POST", "/api/workflows", {"json": start, "headers": _auth(worker_token)}),
        ("POST", "/api/workflows", {"json": {**start, "workflow_type": ""}, "headers": auth}),
        ("POST", "/api/workflows", {"json": {**start, "bogus": 1}, "headers": auth}),
        ("POST", "/api/workflows", {"json": [1, 2], "headers": auth}),
        ("POST", "/api/workflows", {"content": b'{"workflow_type": ',
                                    "headers": {**auth, "Content-Type": "application/json"}}),
        ("POST", "/api/workflows", {"content": b'{"workflow_type": "t", "input": NaN}',
                                    "headers": {**auth, "Content-Type": "application/json"}}),
        ("POST", "/api/workflows", {"content": b"workflow_type=t",
                                    "headers": {**auth, "Content-Type": "text/plain"}}),
        ("GET", "/api/workflows/{id}/result", {"headers": auth}),
        ("GET", "/api/workflows/{id}/result?wait=abc", {"headers": auth}),
        ("GET", "/api/workflows/{id}/result", {}),
    ]
    for method, path, kwargs in cases:
        lean_answer, ref_answer = _both(engine, reference, method, path, **kwargs)
        assert lean_answer == ref_answer, (method, path, kwargs)
        assert lean_answer["status"] != 500, lean_answer

    # Of a run that exists: the start is refused the second time; its result reads as running.
    for e in (engine, reference):
        wid = f"parity-dup-{e.port}"
        first = httpx.post(e.url + "/api/workflows", headers=auth, timeout=30,
                           json={**start, "workflow_id": wid})
        assert first.status_code == 201, first.text
    answers = []
    no_such_run = str(uuid.uuid4())
    for e in (engine, reference):
        wid = f"parity-dup-{e.port}"
        ids = {wid: "<id>"}
        again = httpx.post(e.url + "/api/workflows", headers=auth, timeout=30,
                           json={**start, "workflow_id": wid})
        result = httpx.get(f"{e.url}/api/workflows/{wid}/result", headers=auth,
                           params={"wait": "0.3"}, timeout=30)
        bad_run = httpx.get(f"{e.url}/api/workflows/{wid}/result", headers=auth,
                            params={"run_id": no_such_run}, timeout=30)
        answers.append([_answer(r, ids) for r in (again, result, bad_run)])
    assert answers[0] == answers[1]
    assert [a["status"] for a in answers[0]] == [409, 200, 404]
    assert answers[0][1]["body"]["status"] == "running"


def test_lean_and_django_answer_the_start_options_alike(stack: Stack, engine: Engine,
                                                       reference: Engine) -> None:
    """``id_conflict_policy`` and signal-with-start: the same answers from both paths,
    whether the start finds an open run (200), refuses it (409) or starts one (201)."""
    auth = _auth(stack.token)
    start = {"workflow_type": "nobody_serves_this", "task_queue": "lean-parity"}
    follow_ups: list[dict[str, Any]] = [
        {**start, "id_conflict_policy": "use_existing"},
        {**start, "id_conflict_policy": "use_existing", "workflow_type": "other"},
        {**start, "id_conflict_policy": "use_existing", "task_queue": "other"},
        {**start, "start_signal": "go", "start_signal_input": [1]},
        {**start, "start_signal": "go", "id_conflict_policy": "fail"},
        {**start, "start_signal_input": 1},
        {**start, "id_conflict_policy": "nope"},
        {**start, "id_conflict_policy": "use_existing", "request_id": "{rid}"},
        {**start, "id_conflict_policy": "use_existing", "request_id": "{rid}"},
    ]
    answers = []
    for e in (engine, reference):
        wid = f"parity-options-{uuid.uuid4().hex[:8]}"
        ids = {wid: "<id>"}
        rid = uuid.uuid4().hex
        fresh = {**start, "workflow_id": f"{wid}-sws", "start_signal": "go"}
        got = [httpx.post(e.url + "/api/workflows", headers=auth, timeout=30, json=body)
               for body in [{**start, "workflow_id": wid}, fresh]]
        for body in follow_ups:
            body = {k: (rid if v == "{rid}" else v) for k, v in body.items()}
            got.append(httpx.post(e.url + "/api/workflows", headers=auth, timeout=30,
                                  json={**body, "workflow_id": wid}))
        answers.append([_answer(r, ids) for r in got])
    assert answers[0] == answers[1]
    assert [a["status"] for a in answers[0]] == [201, 201, 200, 409, 409, 200, 422, 422, 422,
                                                 200, 200]
    assert [a["body"].get("started") for a in answers[0][:3]] == [True, True, False]


def test_result_long_poll_is_woken_by_the_close(stack: Stack, engine: Engine,
                                                worker: Proc) -> None:
    auth = _auth(stack.token)
    wid = f"lean-wake-{uuid.uuid4().hex[:8]}"
    got: dict[str, Any] = {}

    def wait_result() -> None:
        got["response"] = httpx.get(f"{engine.url}/api/workflows/{wid}/result",
                                    headers=auth, params={"wait": "50"}, timeout=120)

    started = httpx.post(engine.url + "/api/workflows", headers=auth, timeout=30,
                         json={"workflow_type": "sleeper", "workflow_id": wid, "input": 1.0})
    assert started.status_code == 201, started.text
    waiter = threading.Thread(target=wait_result)
    began = time.monotonic()
    waiter.start()
    waiter.join(timeout=120)
    assert not waiter.is_alive()
    response = got["response"]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed", body
    assert body["workflow_id"] == wid and body["closed_at"]
    # It answered at the close, not at the end of its 50 s wait.
    assert time.monotonic() - began < 45


def test_a_client_gone_mid_wait_leaves_the_engine_serving(stack: Stack, engine: Engine) -> None:
    auth = _auth(stack.token)
    wid = f"lean-gone-{uuid.uuid4().hex[:8]}"
    assert httpx.post(engine.url + "/api/workflows", headers=auth, timeout=30, json={
        "workflow_type": "nobody_serves_this", "workflow_id": wid,
        "task_queue": "lean-parity"}).status_code == 201
    for _ in range(20):
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{engine.url}/api/workflows/{wid}/result", headers=auth,
                      params={"wait": "30"}, timeout=0.2)
    assert httpx.get(engine.url + "/healthz", timeout=30).status_code == 200
    quick = httpx.get(f"{engine.url}/api/workflows/{wid}/result", headers=auth, timeout=30)
    assert quick.status_code == 200 and quick.json()["status"] == "running"


def test_lean_answers_are_counted_in_the_http_metrics(stack: Stack, engine: Engine) -> None:
    auth = _auth(stack.token)
    before = _sample(engine, "workflows", "201")
    for _ in range(3):
        assert httpx.post(engine.url + "/api/workflows", headers=auth, timeout=30, json={
            "workflow_type": "nobody_serves_this",
            "task_queue": "lean-parity"}).status_code == 201
    assert _sample(engine, "workflows", "201") == before + 3


def _sample(engine: Engine, view: str, status: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(engine.url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "django_http_responses_total_by_status_view_method":
            for s in family.samples:
                if (s.labels.get("view") == view and s.labels.get("status") == status
                        and s.labels.get("method") == "POST"):
                    return float(s.value)
    return 0.0
