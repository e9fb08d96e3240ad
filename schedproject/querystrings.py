"""Query strings no database can search: refused before any view runs.

A NUL (``%00``) in a query parameter reaches the admin's list filters and search as a
string PostgreSQL refuses (``DataError``, a 500). No stored value holds one (every door
refuses them), so outside the API, whose views answer their own 422s, such a request is a
400, whatever view it was for.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


class RefuseNulQueryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/") and any(
            "\x00" in key or any("\x00" in value for value in request.GET.getlist(key))
            for key in request.GET
        ):
            return HttpResponseBadRequest("A query parameter holds a NUL character (%00).",
                                          content_type="text/plain")
        return self.get_response(request)
