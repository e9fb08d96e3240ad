"""The dashboard's forms: every field checked here, before a service is called.

Limits are the REST API's: names and ids up to the protocol's limits (``sdk.protocol.limits``),
reasons up to 4096 characters, JSON payloads any JSON value that every backend can store.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from rest_framework.exceptions import ValidationError as DrfValidationError

from sdk.protocol.limits import MAX_NAME_LENGTH, MAX_WORKFLOW_ID_LENGTH
from sdk.protocol.names import INVALID_NAME, name_problem
from workflows.api.serializers import MAX_REASON_LENGTH, check_json_value
from workflows.core.state import Status

MAX_TIMEOUT_SECONDS = 3653 * 24 * 3600
TIME_RANGES = {"15m": 15 * 60, "1h": 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600,
               "30d": 30 * 24 * 3600}
TIME_RANGE_CHOICES = [("", "any time"), ("15m", "last 15 minutes"), ("1h", "last hour"),
                      ("24h", "last 24 hours"), ("7d", "last 7 days"), ("30d", "last 30 days")]
STATUS_CHOICES = [("", "any status"), *((s.value, s.value) for s in Status)]


def _surrogate_free(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must not contain unpaired surrogate characters") from None


class JSONValueField(forms.CharField):
    """A JSON document typed into a text area: any JSON value; empty means null."""

    widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false",
                                   "placeholder": 'JSON, e.g. {"order_id": 1} or "Ada"'})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, "
                                  f"column {exc.colno}). Strings need double quotes, "
                                  f'e.g. "Grace".') from None
        except RecursionError:
            raise ValidationError("Not valid JSON: nested too deeply.") from None
        try:
            check_json_value(data)
        except DrfValidationError as exc:
            raise ValidationError(f"Not storable JSON: {' '.join(map(str, exc.detail))}") from None
        return data

    def validate(self, value: Any) -> None:  # None is a valid value (JSON null)
        pass

    def run_validators(self, value: Any) -> None:
        pass


def _valid_name(value: str) -> None:
    """The API's check of a name (``sdk.protocol.names``): which character, and where."""
    problem = name_problem(value, max_length=len(value))
    if problem is not None:
        raise ValidationError(f"The name {problem}.", code=INVALID_NAME)


def _name(label: str, **kwargs: Any) -> forms.CharField:
    return forms.CharField(label=label, max_length=MAX_NAME_LENGTH, strip=False,
                           validators=[_valid_name], **kwargs)


def _workflow_id(**kwargs: Any) -> forms.CharField:
    return forms.CharField(label="Workflow id", max_length=MAX_WORKFLOW_ID_LENGTH, strip=False,
                           validators=[_valid_name], **kwargs)


def storable_id_problem(workflow_id: str) -> str | None:
    """Why no run can have ``workflow_id`` (too long, NUL, a lone surrogate), or ``None``.
    Looser than a name on purpose: it finds runs, it does not name new ones."""
    if len(workflow_id) > MAX_WORKFLOW_ID_LENGTH:
        return f"must be at most {MAX_WORKFLOW_ID_LENGTH} characters"
    if "\x00" in workflow_id:
        return "must not contain NUL"
    try:
        workflow_id.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired surrogate characters"
    return None


def _storable_id(value: str) -> None:
    problem = storable_id_problem(value)
    if problem is not None:
        raise ValidationError(f"The id {problem}.")


class StartForm(forms.Form):
    workflow_type = _name("Workflow type", widget=forms.TextInput(attrs={"list": "workflow-types"}))
    workflow_id = _workflow_id(required=False, help_text="Leave empty for a new UUID.")
    task_queue = _name("Task queue", initial="default")
    input = JSONValueField(label="Input (JSON)")
    execution_timeout = forms.FloatField(
        label="Execution timeout (seconds)", required=False, min_value=0.001,
        max_value=MAX_TIMEOUT_SECONDS, help_text="Optional: the whole run times out after this.")

    def clean_execution_timeout(self) -> float | None:
        value = self.cleaned_data.get("execution_timeout")
        if value is not None and value != value:  # NaN
            raise ValidationError("Enter a number.")
        return value


class RunForm(forms.Form):
    """Names the run an action applies to (hidden fields on the run's page)."""

    workflow_id = forms.CharField(max_length=MAX_WORKFLOW_ID_LENGTH, strip=False,
                                  validators=[_storable_id], widget=forms.HiddenInput)
    run_id = forms.CharField(required=False, max_length=36, widget=forms.HiddenInput)

    def clean_run_id(self) -> str | None:
        value = self.cleaned_data.get("run_id") or None
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValidationError("Not a run id (a UUID).") from None


class SignalForm(RunForm):
    name = _name("Signal name")
    input = JSONValueField(label="Input (JSON)", widget=forms.Textarea(attrs={
        "rows": 2, "spellcheck": "false", "placeholder": 'JSON, e.g. "Grace" or {"ok": true}'}))


class QueryForm(RunForm):
    """Ask a run's query handler (``dispatch.queries``): its name and arguments."""

    name = _name("Query name")
    args = JSONValueField(label="Arguments (a JSON list)", widget=forms.Textarea(attrs={
        "rows": 2, "spellcheck": "false", "placeholder": 'a JSON list, e.g. ["tea"]; empty: none'}))

    def clean_args(self) -> list[Any]:
        args = self.cleaned_data.get("args")
        if args is None:
            return []
        if not isinstance(args, list):
            raise ValidationError('The arguments are a JSON list, e.g. ["tea"] or [].')
        return args


class ReasonForm(RunForm):
    reason = forms.CharField(label="Reason", required=False, max_length=MAX_REASON_LENGTH,
                             validators=[_surrogate_free])


class ListFilterForm(forms.Form):
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    workflow_type = _name("Type", required=False)
    task_queue = _name("Task queue", required=False)
    workflow_id = _workflow_id(required=False)
    range = forms.ChoiceField(label="Started", choices=TIME_RANGE_CHOICES, required=False)
    cursor = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)
