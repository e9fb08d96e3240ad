"""Durable timers: every wake-up the engine owes a run is a row with its due time."""

from __future__ import annotations

from django.db import models

from workflows.models import Execution


class TimerKind(models.TextChoices):
    USER = "user"                                  # ctx.sleep, wait_for_signal timeouts
    WORKFLOW_TIMEOUT = "workflow_timeout"          # the run's execution timeout
    WORKFLOW_TASK_RETRY = "workflow_task_retry"    # back-off after a failed workflow task
    ACTIVITY_RETRY = "activity_retry"              # back-off before the next attempt
    ACTIVITY_ATTEMPT = "activity_attempt"          # start-to-close or heartbeat deadline
    ACTIVITY_SCHEDULE_TO_START = "activity_schedule_to_start"
    ACTIVITY_SCHEDULE_TO_CLOSE = "activity_schedule_to_close"


class Timer(models.Model):
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="timers")
    kind = models.CharField(max_length=32, choices=TimerKind.choices)
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
