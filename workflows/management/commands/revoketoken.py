"""``manage.py revoketoken PREFIX_OR_NAME [--all]``: revoke a live token."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.api.tokens import token_revoke
from workflows.errors import SchedError


class Command(BaseCommand):
    help = "Revoke the live token with this prefix or name (requests with it then get 401)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix_or_name")
        parser.add_argument("--all", action="store_true", dest="all_matching",
                            help="Revoke every live token with this name.")

    def handle(self, *args: Any, prefix_or_name: str, all_matching: bool,
               **options: Any) -> None:
        try:
            tokens = token_revoke(prefix_or_name=prefix_or_name, all_matching=all_matching)
        except SchedError as exc:
            raise CommandError(exc.message) from None
        for token in tokens:
            self.stdout.write(f"Revoked {token.name!r} ({token.prefix}, {token.scope}).")
