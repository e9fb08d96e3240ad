"""Durable timers: every wake-up the engine owes a run is a row with its due time.

The kinds are the core's (``workflows.core.effects``); ``timers.store`` is the one module
that writes this table.
"""

from __future__ import annotations

from django.db import models

from workflows.core.effects import TimerKind
from workflows.models import Execution, enum_choices

__all__ = ["Timer", "TimerKind"]


class Timer(models.Model):
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="timers")
    kind = models.CharField(max_length=32, choices=enum_choices(TimerKind))
    fire_at = models.DateTimeField(db_index=True)
    # The seq of the user timer or activity this timer belongs to, if any.
    seq = models.IntegerField(null=True, blank=True)
    # What firing needs: the seq of a user timer, the task id and attempt of an activity...
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["execution", "kind", "seq"], name="timer_exec_kind_seq")]

    def __str__(self) -> str:
        return f"{self.kind} at {self.fire_at:%Y-%m-%d %H:%M:%S.%f}"
