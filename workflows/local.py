"""The engine plus a demo worker on one machine, for a first run (``manage.py runlocal``).

``run_local(host=..., port=..., worker=..., out=...)`` creates a local API token once (kept in
the data folder so the demo worker and the user can reuse it), prints it as
``API token: <token>``, creates a dashboard login ``admin`` once (its password kept in
``data/admin_password``), prints it as ``Dashboard login: admin / <password>``, starts the demo
worker as a child process, and serves the engine (``dispatch.lifecycle.Engine``) in the
foreground; the worker is stopped when the engine stops.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from io import TextIOBase

from django.contrib.auth import get_user_model
from django.core.management import call_command

from schedproject import config

from .models import ApiToken, hash_token

EXAMPLES = """
Start the demo workflows (in another terminal):

  TOKEN={token}
  curl -s -X POST http://{host}:{port}/api/workflows -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"workflow_type": "hello", "input": "Ada"}}'
  curl -s -X POST http://{host}:{port}/api/workflows -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{{"workflow_type": "order", "workflow_id": "order-1", "input": {{"order_id": 1}}}}'
  curl -s -X POST http://{host}:{port}/api/workflows -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{{"workflow_type": "approval", "workflow_id": "approval-1",
            "input": {{"timeout": 300}}}}'
  curl -s -X POST http://{host}:{port}/api/workflows/approval-1/signals \\
       -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{{"name": "approve", "input": "Grace"}}'
  curl -s -X POST http://{host}:{port}/api/workflows -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"workflow_type": "long_sleep", "input": 30}}'
  curl -s "http://{host}:{port}/api/workflows/order-1/result?wait=30" \\
       -H "Authorization: Bearer $TOKEN"
"""


def local_token() -> str:
    """The local admin token, created on first use and kept in the data folder."""
    path = config.get().data_dir / "local_token"
    if path.exists():
        raw = path.read_text().strip()
        if ApiToken.objects.filter(digest=hash_token(raw), revoked_at__isnull=True).exists():
            return raw
    _, raw = ApiToken.issue("local")
    path.write_text(raw + "\n")
    path.chmod(0o600)
    return raw


ADMIN_USERNAME = "admin"


def local_admin() -> str:
    """``admin / <password>`` for the dashboard: the superuser is created on first use with a
    random password kept (0600) in the data folder. A password changed since is left alone."""
    path = config.get().data_dir / "admin_password"
    users = get_user_model()._default_manager
    user = users.filter(username=ADMIN_USERNAME).first()
    if user is None:
        password = secrets.token_urlsafe(12)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(password + "\n")
        users.db_manager().create_superuser(
            username=ADMIN_USERNAME, email="", password=password)
        return f"{ADMIN_USERNAME} / {password}"
    if path.exists():
        password = path.read_text().strip()
        if user.check_password(password):
            return f"{ADMIN_USERNAME} / {password}"
    return (f"{ADMIN_USERNAME} / (changed since it was created; reset it with "
            f"`manage.py changepassword {ADMIN_USERNAME}`)")


def run_local(*, host: str, port: int, worker: bool, out: TextIOBase) -> None:
    """Print how to use the local engine, start the demo worker, and serve the engine."""
    token = local_token()
    login = local_admin()
    out.write(f"sched engine at http://{host}:{port}  (API docs: /api/docs/)\n")
    out.write(EXAMPLES.format(token=token, host=host, port=port))
    out.write(f"Dashboard: http://{host}:{port}/\n")
    out.write(f"Dashboard login: {login}\n")
    out.write(f"API token: {token}\n")
    out.flush()
    child = None
    if worker:
        child = subprocess.Popen(
            [sys.executable, "-m", "sdk.worker", "--engine", f"http://{host}:{port}",
             "--task-queue", "default", "fixtures.demo_workflows"],
            env={**os.environ, "SCHED_TOKEN": token},
        )
    try:
        # The engine command, so its system checks run as they do under ``runengine``.
        call_command("runengine", host=host, port=port)
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=15)
