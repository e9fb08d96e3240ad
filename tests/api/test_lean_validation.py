"""The lean path's validation (``workflows.api.fast._valid``): one serializer instance per
thread takes each body in turn, and nothing of one body is left for the next."""

from __future__ import annotations

import pytest

from workflows.api.fast import Fallback, _valid
from workflows.api.views import WorkflowResultApi, WorkflowsApi

Start = WorkflowsApi.StartInputSerializer


def test_each_body_is_validated_on_its_own() -> None:
    first = _valid(Start, {"workflow_type": "A", "input": [1], "workflow_id": "one"})
    assert first["workflow_type"] == "A" and first["workflow_id"] == "one"
    with pytest.raises(Fallback):
        _valid(Start, {"workflow_type": "A", "unknown": 1})  # refused: unknown key
    with pytest.raises(Fallback):
        _valid(Start, {"input": 1})  # refused: no workflow_type
    second = _valid(Start, {"workflow_type": "B"})
    assert second["workflow_type"] == "B"
    assert "workflow_id" not in second and second["task_queue"] == "default"
    assert second["input"] is None


def test_serializers_are_kept_apart() -> None:
    _valid(Start, {"workflow_type": "A"})
    query = _valid(WorkflowResultApi.ResultQuerySerializer, {"wait": "1.5"})
    assert query["wait"] == 1.5
    with pytest.raises(Fallback):
        _valid(WorkflowResultApi.ResultQuerySerializer, {"wait": "soon"})
    assert _valid(Start, {"workflow_type": "C"})["workflow_type"] == "C"
