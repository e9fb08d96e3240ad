"""The dashboard's template filters (a builtin library: see ``TEMPLATES`` in settings).

Every URL that carries a workflow id is built here or in ``views.run_url``, with the id
quoted whole (``quote(..., safe="")``): an id may hold ``/``, ``?``, ``#`` or ``%``, and each
must reach the view as it was written.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django import template

register = template.Library()


@register.filter
def run_url(run: Any) -> str:
    """The page of ``run`` (an ``Execution``): its workflow id quoted, its run id in the query."""
    from .views import run_url as url

    return url(run)


@register.filter
def quoted(value: Any) -> str:
    """``value`` quoted for one URL path segment or query value (nothing left unquoted)."""
    return quote(str(value), safe="")
