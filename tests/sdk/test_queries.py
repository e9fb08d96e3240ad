"""Queries in the workflow runtime: handlers set by workflow code, answered from the cached
instance or from a replay of the history, and never able to change the run."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk._queries import QUERY_FAILED, QUERY_NOT_FOUND, QueryHandlers, history_for_query, ran
from sdk._runtime import WorkflowInstance
from sdk._workflow import WorkflowContext, workflow, workflow_definition
from tests.sdk.test_runtime import EngineSim


@workflow
async def counter(ctx: WorkflowContext, start: int) -> dict[str, Any]:
    state: dict[str, Any] = {"count": start, "seen": []}
    ctx.set_query_handler("count", lambda: state["count"])
    ctx.set_query_handler("plus", lambda n, m=0: state["count"] + n + m)
    ctx.set_query_handler("boom", lambda: 1 / 0)
    ctx.set_query_handler("sneaky", lambda: ctx.start_activity("charge", 1))
    ctx.set_query_handler("dice", lambda: ctx.random().random())

    def swallow() -> str:
        try:
            ctx.start_activity("charge", 1)
        except Exception:
            pass
        return "ok"

    ctx.set_query_handler("swallow", swallow)
    ctx.set_query_handler("not_json", lambda: object())
    while True:
        signal = await ctx.wait_for_signal()
        if signal.name == "stop":
            return state
        state["count"] += signal.input
        state["seen"].append(signal.input)


def fresh(sim: EngineSim, events: list[dict[str, Any]] | None = None) -> WorkflowInstance:
    """A new instance that replays the history for a query, as a worker without the run does."""
    inst = WorkflowInstance(sim.definition, workflow_id=sim.workflow_id, run_id=sim.run_id,
                            workflow_type=sim.definition.name, task_queue="q")
    result = inst.activate(history_for_query(sim.history if events is None else events))
    assert result.failure is None, result.failure
    return inst


def test_a_query_reads_the_state_of_the_cached_instance_and_of_a_replay() -> None:
    sim = EngineSim(counter, 1)
    sim.run_task()
    assert sim.instance is not None
    assert sim.instance.query("count", []).result == 1
    sim.signal("add", 4)
    sim.run_task()
    assert sim.instance.query("count", []).result == 5
    assert sim.instance.query("plus", [10, 1]).result == 16
    assert fresh(sim).query("count", []).result == 5


def test_a_closed_run_is_queried_by_replaying_all_of_its_history() -> None:
    sim = EngineSim(counter, 2)
    sim.run_task()
    sim.signal("add", 3)
    sim.signal("stop")
    sim.run_task()
    assert sim.history[-1]["event_type"] == "WorkflowExecutionCompleted"
    inst = fresh(sim)
    assert inst.query("count", []).result == 5
    assert inst.finished


def test_an_open_run_with_a_task_in_flight_is_queried_as_of_its_last_completed_task() -> None:
    sim = EngineSim(counter, 0)
    sim.run_task()
    sim.signal("add", 7)
    sim.start_task()  # a worker holds the task: its outcome is not in history yet
    assert sim.history[-1]["event_type"] == "WorkflowTaskStarted"
    inst = fresh(sim)
    assert inst.query("count", []).result == 0  # the signal is not applied before its task
    assert inst.query("count", []).result == 0


def test_an_unknown_name_is_query_not_found_naming_the_handlers() -> None:
    sim = EngineSim(counter, 0)
    sim.run_task()
    assert sim.instance is not None
    answer = sim.instance.query("nope", [])
    assert answer.error == QUERY_NOT_FOUND
    assert "'nope'" in answer.message and "'count'" in answer.message


def test_a_handler_that_raises_fails_the_query_only() -> None:
    sim = EngineSim(counter, 0)
    sim.run_task()
    assert sim.instance is not None
    answer = sim.instance.query("boom", [])
    assert answer.error == QUERY_FAILED and not answer.changed
    assert "ZeroDivisionError" in answer.message
    wrong_args = sim.instance.query("count", [1, 2])
    assert wrong_args.error == QUERY_FAILED and "TypeError" in wrong_args.message
    assert sim.instance.query("not_json", []).error == QUERY_FAILED
    sim.signal("add", 1)
    sim.run_task()
    assert sim.instance is not None and sim.instance.query("count", []).result == 1


@pytest.mark.parametrize("name", ["sneaky", "swallow", "dice"])
def test_a_handler_that_tries_to_change_the_run_fails_and_issues_no_command(name: str) -> None:
    sim = EngineSim(counter, 0)
    sim.run_task()
    inst = sim.instance
    assert inst is not None
    answer = inst.query(name, [])
    assert answer.error == QUERY_FAILED and answer.changed
    assert "must not change the workflow" in answer.message
    # The run goes on: a replay from scratch matches the history, no activity was scheduled.
    sim.signal("add", 2)
    sim.signal("stop")
    sim.instance = None
    sim.run_task()
    assert sim.history[-1]["event_type"] == "WorkflowExecutionCompleted"
    assert "ActivityTaskScheduled" not in {e["event_type"] for e in sim.history}
    assert fresh(sim).query("count", []).result == 2


def test_a_run_whose_first_task_has_not_completed_has_not_run() -> None:
    sim = EngineSim(counter, 0)
    sim.start_task()
    assert not ran(history_for_query(sim.history))
    sim.finish_task(sim.history[1]["event_id"])
    assert ran(history_for_query(sim.history))


def test_handlers_must_be_sync_callables_with_a_name() -> None:
    handlers = QueryHandlers()

    async def async_handler() -> int:
        return 1

    with pytest.raises(TypeError, match="sync"):
        handlers.set("a", async_handler)
    with pytest.raises(TypeError):
        handlers.set("a", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        handlers.set("", lambda: 1)
    handlers.set("a", lambda: 1)
    assert handlers.answer("a", []).result == 1
    handlers.set("a", None)
    assert handlers.answer("a", []).error == QUERY_NOT_FOUND


def test_a_handler_that_sets_or_removes_handlers_fails_and_changes_none() -> None:
    handlers = QueryHandlers()

    def meddle() -> str:
        try:
            handlers.set("other", lambda: 2)
        except Exception:
            pass
        return "done"

    handlers.set("meddle", meddle)
    handlers.set("remove", lambda: handlers.set("meddle", None))
    for name in ("meddle", "remove"):
        answer = handlers.answer(name, [])
        assert answer.error == QUERY_FAILED and answer.changed
    assert handlers.answer("other", []).error == QUERY_NOT_FOUND
    assert handlers.answer("meddle", []).error == QUERY_FAILED  # still there


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-1000, 1000), max_size=8), st.integers(0, 3))
def test_queries_answer_the_sum_of_the_signals_and_never_change_history(
        signals: list[int], queries_per_task: int) -> None:
    sim = EngineSim(counter, 0)
    sim.run_task()
    total = 0
    for value in signals:
        sim.signal("add", value)
        before = list(sim.history)
        sim.run_task()
        total += value
        assert sim.instance is not None
        for _ in range(queries_per_task):
            assert sim.instance.query("count", []).result == total
            assert sim.instance.query("sneaky", []).error == QUERY_FAILED
            sim.instance = None if sim.instance.query("dice", []).changed else sim.instance
            if sim.instance is None:
                sim.instance = fresh(sim)
                sim.delivered = len(sim.history)
        assert sim.history[:len(before)] == before
    assert fresh(sim).query("count", []).result == total
    assert workflow_definition(counter).name == "counter"


def test_the_example_in_docs_sdk_md_answers_as_documented() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
    section = text[text.index("\n## Queries\n"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "docs/sdk.md", "exec"), namespace)
    sim = EngineSim(namespace["cart"], "ada")
    sim.run_task()
    sim.signal("add", "tea")
    sim.run_task()
    assert sim.instance is not None
    assert sim.instance.query("items", []).result == ["tea"]
    assert sim.instance.query("has", ["coffee"]).result is False
    assert fresh(sim).query("summary", []).result == {"owner": "ada", "count": 1}
    sim.signal("checkout")
    sim.run_task()
    assert fresh(sim).query("has", ["tea"]).result is True
