"""``manage.py runlocal``: the engine plus a demo worker, for a first run on one machine.

Creates a local API token once (kept in the data folder so the demo worker and the user can
reuse it), prints it as ``API token: <token>``, creates a dashboard login ``admin`` once (its
password kept in ``data/admin_password``), prints it as ``Dashboard login: admin / <password>``,
starts the demo worker as a child process, and serves the engine in the foreground.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from workflows.models import ApiToken, hash_token

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
    path = settings.SCHED.data_dir / "local_token"
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
    path = settings.SCHED.data_dir / "admin_password"
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


class Command(BaseCommand):
    help = "Run the engine and a demo worker on this machine."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        token = local_token()
        login = local_admin()
        self.stdout.write(f"sched engine at http://{host}:{port}  (API docs: /api/docs/)")
        self.stdout.write(EXAMPLES.format(token=token, host=host, port=port))
        self.stdout.write(f"Dashboard: http://{host}:{port}/")
        self.stdout.write(f"Dashboard login: {login}")
        self.stdout.write(f"API token: {token}")
        self.stdout.flush()
        worker = None
        if not options["no_worker"]:
            worker = subprocess.Popen(
                [sys.executable, "-m", "sdk.worker", "--engine", f"http://{host}:{port}",
                 "--task-queue", "default", "fixtures.demo_workflows"],
                env={**os.environ, "SCHED_TOKEN": token},
            )
        try:
            call_command("runengine", host=host, port=port)
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=15)
