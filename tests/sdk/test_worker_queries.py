"""The worker's side of queries, against the scripted engine of test_worker_unit: answers from
the cached run, replays from a history it asks for page by page, and refusals."""

from __future__ import annotations

from typing import Any

import sdk

from .test_worker_unit import event, first_events, run, running_worker, workflow_task


@sdk.workflow
async def tally(ctx: sdk.WorkflowContext, start: int) -> int:
    total = start
    ctx.set_query_handler("total", lambda: total)
    ctx.set_query_handler("sneaky", lambda: ctx.start_activity("echo", 1))
    while True:
        signal = await ctx.wait_for_signal()
        if signal.name == "stop":
            return total
        total += signal.input


def query_task(name: str, args: list[Any], history_length: int, *, token: str = "q.1",
               events: list[dict[str, Any]] | None = None, sticky: int = 0,
               workflow_type: str = "tally") -> dict[str, Any]:
    return {"type": "query_task", "token": token, "workflow_id": "wf1", "run_id": "run1",
            "workflow_type": workflow_type, "task_queue": "q", "query_name": name,
            "args": args, "history_length": history_length, "events": events or [],
            "sticky_next_event_id": sticky}


def completed_first_task() -> list[dict[str, Any]]:
    """Events 1..6: the first task ran and completed, then a signal (not yet seen by a task)."""
    return [*first_events("tally", 10),
            event(4, "WorkflowTaskCompleted", scheduled_event_id=2, started_event_id=3,
                  worker="wk1"),
            event(5, "WorkflowExecutionSignaled", signal_name="add", input=5),
            event(6, "WorkflowTaskScheduled", task_queue="q", attempt=1)]


def test_the_cached_run_answers_when_it_is_current() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[tally]) as (engine, worker, _):
            await engine.send(workflow_task("tally", first_events("tally", 10)))
            await engine.expect("workflow_task_completed")
            await engine.send(query_task("total", [], 4, sticky=4))
            answer = await engine.expect("query_result")
            assert (answer["token"], answer["result"]) == ("q.1", 10)
            assert answer.get("error") is None
            assert all(m["type"] != "history_request" for m in engine.log)
            await engine.send(query_task("sneaky", [], 4, sticky=4, token="q.2"))
            refused = await engine.expect("query_result")
            assert refused["error"] == "query_failed"
            assert "must not change the workflow" in refused["message"]
            assert "run1" not in worker._cache  # it may have been half-changed: dropped

    run(scenario)


def test_a_worker_without_the_run_replays_the_history_it_asks_for() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[tally]) as (engine, worker, _):
            history = completed_first_task()
            await engine.send(query_task("total", [], len(history), events=history[:2]))
            request = await engine.expect("history_request")
            assert (request["token"], request["first_event_id"]) == ("q.1", 3)
            await engine.send({"type": "history", "token": "q.1", "events": history[2:4],
                               "more": True, "id": request["id"]})
            request = await engine.expect("history_request")
            assert request["first_event_id"] == 5
            await engine.send({"type": "history", "token": "q.1", "events": history[4:],
                               "id": request["id"]})
            answer = await engine.expect("query_result")
            assert answer["result"] == 10  # the signal has not been through a task yet
            assert "run1" not in worker._cache  # a replay for a query is not cached
            await engine.send(query_task("nope", [], len(history), events=history,
                                         token="q.2"))
            missing = await engine.expect("query_result")
            assert missing["error"] == "query_not_found" and "'total'" in missing["message"]

    run(scenario)


def test_a_run_not_yet_run_and_a_type_not_served_are_told() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[tally]) as (engine, _, _):
            await engine.send(query_task("total", [], 3, events=first_events("tally", 1)))
            early = await engine.expect("query_result")
            assert early["error"] == "query_not_found" and "not run yet" in early["message"]
            await engine.send(query_task("total", [], 1, workflow_type="other", token="q.2"))
            unknown = await engine.expect("query_result")
            assert unknown["error"] == "unknown_workflow_type"

    run(scenario)
