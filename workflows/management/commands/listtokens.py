"""``manage.py listtokens``: every token, live and revoked (never the raw token)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand

from workflows.api.tokens import token_list

COLUMNS = ("NAME", "PREFIX", "SCOPE", "CREATED", "LAST USED", "REVOKED")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


class Command(BaseCommand):
    help = "List API tokens: name, prefix, scope, created, last used, revoked."

    def handle(self, *args: Any, **options: Any) -> None:
        rows = [COLUMNS] + [
            (t.name, t.prefix, t.scope, _when(t.created_at), _when(t.last_used_at),
             _when(t.revoked_at))
            for t in token_list()
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        for row in rows:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
                              .rstrip())
