"""``manage.py createtoken NAME [--scope admin|api|worker]``: issue a token, print it once.

The raw token is the last line of the output, alone, so scripts can take it with ``tail -1``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.api.tokens import token_issue
from workflows.models import TokenScope


class Command(BaseCommand):
    help = "Issue an API token and print it (it is stored hashed and never shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the token is for, e.g. 'ci' or 'worker-eu-1'.")
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.ADMIN,
                            help="admin: API and workers; api: the REST API; "
                                 "worker: the worker socket only (default: admin).")

    def handle(self, *args: Any, name: str, scope: str, **options: Any) -> None:
        name = name.strip()
        if not name or len(name) > 100 or "\x00" in name:
            raise CommandError("NAME must be 1 to 100 characters")
        token, raw = token_issue(name=name, scope=scope)
        self.stdout.write(f"Created {scope} token {token.name!r} (prefix {token.prefix}). "
                          "Store it now: it is not shown again.")
        self.stdout.write(raw)
