"""Access control end to end: token scopes on both doors, revocation, the admin's login and
CSRF, and no secret in any log line."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

import sdk
from tests.e2e.harness import Stack

from .conftest import MODULE


def new_token(stack: Stack, name: str, *scope: str) -> str:
    out = stack.manage("createtoken", name, *scope).stdout
    return out.strip().splitlines()[-1]


def test_scopes_revocation_login_and_no_secrets_in_logs(stack: Stack, logs: Path) -> None:
    api = new_token(stack, "api-client", "--scope", "api")
    worker_token = new_token(stack, "worker-1", "--scope", "worker")
    engine = stack.engine(log=logs / "engine.log", extra_env={"SCHED_LOG_LEVEL": "DEBUG"})
    worker = stack.worker(MODULE, engine=engine, log=logs / "worker.log")
    worker.popen.kill()  # the fixture's admin-token worker: replaced by scoped ones below
    stack.token, admin = worker_token, stack.token
    scoped = stack.worker(MODULE, engine=engine, log=logs / "scoped-worker.log")
    try:
        # A worker token runs work; an api token uses the API ...
        with sdk.Client(engine.url, token=api) as client:
            assert client.start_workflow("healthy", 1).result(timeout=30) == 1
        # ... and neither may do the other's job.
        with sdk.Client(engine.url, token=worker_token) as client:
            try:
                client.start_workflow("healthy", 2)
                raise AssertionError("a worker token used the API")
            except sdk.SchedAPIError as err:
                assert err.status_code == 403
        stack.token = api
        refused = stack.worker(MODULE, engine=engine, log=logs / "api-as-worker.log")
        assert refused.popen.wait(timeout=30) != 0
        assert "refused the worker token" in (logs / "api-as-worker.log").read_text()

        # Tokens are listed by prefix, never in full, and revocation takes effect at once.
        listed = stack.manage("listtokens").stdout
        assert "api-client" in listed and "worker-1" in listed
        assert api not in listed and worker_token not in listed
        stack.manage("revoketoken", "api-client")
        r = httpx.get(engine.url + "/api/workflows", headers={"Authorization": f"Bearer {api}"})
        assert r.status_code == 401
        stack.manage("revoketoken", "worker-1")
        stack.token = worker_token
        revoked = stack.worker(MODULE, engine=engine, log=logs / "revoked-worker.log")
        assert revoked.popen.wait(timeout=30) != 0

        # The admin needs a Django login, and its forms CSRF protection.
        admin_page = httpx.get(engine.url + "/admin/", follow_redirects=False)
        assert admin_page.status_code == 302
        assert "/admin/login/" in admin_page.headers["location"]
        forged = httpx.post(engine.url + "/admin/login/",
                            data={"username": "x", "password": "y"})
        assert forged.status_code == 403
        assert httpx.get(engine.url + "/admin/",
                         headers={"Authorization": f"Bearer {admin}"}).status_code != 200
    finally:
        scoped.stop()
        engine.stop()

    assert_no_secrets(logs, {api, worker_token, admin, stack.env["SCHED_SECRET_KEY"]})


def test_a_debug_level_worker_log_holds_no_token(stack: Stack, logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log")
    worker = stack.worker(MODULE, engine=engine, log=logs / "worker.log",
                          extra_env={"SCHED_LOG_LEVEL": "DEBUG"})
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            assert client.start_workflow("healthy", 1).result(timeout=30) == 1
    finally:
        worker.stop()
        engine.stop()
    assert_no_secrets(logs, {stack.token})


def assert_no_secrets(logs: Path, secrets: set[str]) -> None:
    for log in logs.iterdir():
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret is in {log.name}"
            assert secret[12:] not in text, f"the secret part of a token is in {log.name}"
        # Nor anything shaped like a bearer header.
        assert not re.search(r"Bearer\s+sched_", text), log.name
