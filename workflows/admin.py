"""Django admin: executions and their histories (view only), and API tokens.

The history is the system of record, so nobody edits it here: executions and events have no
add, change or delete permission, even for superusers. Tokens are issued with
``manage.py createtoken`` (the raw token is shown once) and revoked here or with
``manage.py revoketoken``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .api.tokens import tokens_revoke
from .models import ApiToken, Execution, HistoryEvent


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class HistoryEventInline(ReadOnlyMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = HistoryEvent
    fields = ("event_id", "event_type", "timestamp", "attributes")
    readonly_fields = fields
    ordering = ("event_id",)
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("workflow_id", "run_id", "workflow_type", "task_queue", "status",
                    "created_at", "closed_at")
    list_filter = ("status", "workflow_type", "task_queue")
    search_fields = ("workflow_id",)
    search_help_text = "A workflow id (or part of one), or a run id (exact)."
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    list_select_related = False
    inlines = (HistoryEventInline,)
    fields = ("workflow_id", "run_id", "workflow_type", "task_queue", "status", "created_at",
              "closed_at", "parent", "input", "result", "failure", "last_task_failure",
              "next_event_id", "sticky_worker", "search_attributes", "state")
    readonly_fields = fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Execution],
                           search_term: str) -> tuple[QuerySet[Execution], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset,
                                                                  search_term)
        try:
            run_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(run_id=run_id), may_have_duplicates


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "prefix", "scope", "created_at", "last_used_at", "revoked_at")
    list_filter = ("scope", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "=prefix")
    fields = ("name", "prefix", "scope", "digest", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "scope", "digest", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issue with `manage.py createtoken`: the raw token is shown once

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead, so the record of the token stays

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = tokens_revoke(queryset)
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
