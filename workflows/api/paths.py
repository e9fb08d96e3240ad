"""The ``workflow_id`` URL converter, for the API's and the dashboard's routes.

Django's ``path`` converter is ``.+``, which does not match a line feed: an id holding one
(decoded from ``%0A``) fell through to "no such endpoint". This one takes any non-empty text,
so every id reaches its view and is checked there like any input (``invalid_name``).
"""

from __future__ import annotations

from django.urls import register_converter


class WorkflowIdConverter:
    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(WorkflowIdConverter, "workflow_id")
