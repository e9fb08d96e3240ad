"""Updates in the workflow runtime: handlers run on accepted updates and complete them, a
validator answers without changing the run, and replay reproduces every completion."""

from __future__ import annotations

from typing import Any

import pytest

import sdk
from sdk._queries import UPDATE_NOT_FOUND, UPDATE_REJECTED
from sdk._runtime import replay_history
from sdk._workflow import WorkflowContext, workflow, workflow_definition
from tests.sdk.test_queries import fresh
from tests.sdk.test_runtime import EngineSim


@workflow
async def account(ctx: WorkflowContext, balance: int) -> dict[str, Any]:
    state: dict[str, Any] = {"balance": balance, "closed": False}

    def check(amount: int) -> None:
        if amount <= 0:
            raise ValueError(f"the amount must be positive, not {amount}")

    def deposit(amount: int) -> int:
        state["balance"] += amount
        return int(state["balance"])

    async def withdraw(amount: int) -> int:
        if amount > state["balance"]:
            raise sdk.ApplicationError("insufficient funds", type="Insufficient",
                                       details={"balance": state["balance"]})
        await ctx.execute_activity("debit", amount)
        await ctx.sleep(1)
        state["balance"] -= amount
        return int(state["balance"])

    def close() -> str:
        state["closed"] = True
        return "bye"

    ctx.set_update_handler("deposit", deposit, validator=check)
    ctx.set_update_handler("withdraw", withdraw, validator=check)
    ctx.set_update_handler("close", close)
    missing: dict[str, int] = {}
    ctx.set_update_handler("buggy", lambda: missing["key"])
    ctx.set_update_handler("sneaky", lambda: None,
                           validator=lambda: ctx.start_activity("debit", 1))
    await ctx.wait_condition(lambda: state["closed"])
    return state


def completed(sim: EngineSim) -> dict[str, dict[str, Any]]:
    return {e["attributes"]["update_id"]: e["attributes"] for e in sim.history
            if e["event_type"] == "WorkflowExecutionUpdateCompleted"}


def test_a_sync_handler_completes_its_update_in_the_task_that_runs_it() -> None:
    sim = EngineSim(account, 10)
    sim.run_task()
    sim.update("u1", "deposit", 5)
    sim.run_task()
    assert completed(sim)["u1"]["result"] == 15
    assert sim.state.is_open and sim.state.updates == {}


def test_an_async_handler_runs_activities_and_timers_before_it_completes() -> None:
    sim = EngineSim(account, 10)
    sim.run_task()
    sim.update("u1", "withdraw", 4)
    sim.run_task()
    assert "u1" not in completed(sim) and sim.state.activities
    sim.drive({"debit": lambda amount: None})
    assert completed(sim)["u1"]["result"] == 6
    assert sim.state.is_open


def test_an_application_error_fails_the_update_and_not_the_run() -> None:
    sim = EngineSim(account, 1)
    sim.run_task()
    sim.update("u1", "withdraw", 5)
    sim.run_task()
    failure = completed(sim)["u1"]["failure"]
    assert failure["type"] == "Insufficient" and failure["details"] == {"balance": 1}
    assert completed(sim)["u1"]["result"] is None
    sim.update("u2", "close")
    sim.drive()
    assert sim.history[-1]["event_type"] == "WorkflowExecutionCompleted"


def test_any_other_exception_in_a_handler_fails_the_workflow_task() -> None:
    sim = EngineSim(account, 1)
    sim.run_task()
    sim.update("u1", "buggy")
    result = sim.run_task()
    assert result.cause == "workflow_error"
    assert result.failure is not None and result.failure["type"] == "KeyError"
    assert sim.state.is_open and "u1" in sim.state.updates


def test_an_update_accepted_before_its_handler_is_set_waits_for_it() -> None:
    sim = EngineSim(account, 2)
    sim.update("u1", "deposit", 3)  # before the first task: no handler yet
    sim.run_task()
    assert completed(sim)["u1"]["result"] == 5


def test_the_validator_accepts_rejects_and_knows_no_other_handler() -> None:
    sim = EngineSim(account, 2)
    sim.run_task()
    inst = sim.instance
    assert inst is not None
    assert inst.validate_update("deposit", [3]).error is None
    assert inst.validate_update("close", []).error is None  # no validator: accepted
    rejected = inst.validate_update("deposit", [-1])
    assert rejected.error == UPDATE_REJECTED
    assert rejected.message == "the amount must be positive, not -1"
    missing = inst.validate_update("nope", [])
    assert missing.error == UPDATE_NOT_FOUND and "'deposit'" in missing.message
    sneaky = inst.validate_update("sneaky", [])
    assert sneaky.error == UPDATE_REJECTED and sneaky.changed
    assert "must not change the workflow" in sneaky.message
    # The validator changed nothing: the next task issues no stray command.
    sim.update("u1", "deposit", 1)
    sim.run_task()
    assert [cmd["kind"] for cmd in sim.sent[-1]] == ["complete_update"]


def test_a_replay_validates_against_the_replayed_state() -> None:
    sim = EngineSim(account, 2)
    sim.run_task()
    assert fresh(sim).validate_update("withdraw", [0]).error == UPDATE_REJECTED
    assert fresh(sim).validate_update("withdraw", [1]).error is None


@pytest.mark.parametrize("sticky", [True, False])
def test_a_run_with_updates_replays_deterministically(sticky: bool) -> None:
    sim = EngineSim(account, 10, sticky=sticky)
    sim.update("u0", "deposit", 1)
    sim.run_task()
    sim.update("u1", "withdraw", 3)
    sim.update("u2", "withdraw", 100)
    sim.run_task()
    sim.update("u3", "deposit", 2)
    sim.drive({"debit": lambda amount: None})
    sim.update("u4", "close")
    sim.drive()
    assert sim.history[-1]["event_type"] == "WorkflowExecutionCompleted"
    assert {k: v["result"] for k, v in completed(sim).items()} == {
        "u0": 11, "u1": 10, "u2": None, "u3": 13, "u4": "bye"}
    replay = replay_history(sim.definition, sim.history, workflow_id=sim.workflow_id,
                            run_id=sim.run_id)
    assert replay.failure is None, replay.failure
    assert replay.final_command is not None
    assert replay.final_command["kind"] == "complete_workflow"


def test_a_replay_whose_code_dropped_a_completion_is_nondeterministic() -> None:
    sim = EngineSim(account, 10)
    sim.run_task()
    sim.update("u1", "deposit", 1)
    sim.run_task()
    sim.update("u2", "close")
    sim.drive()

    @sdk.workflow(name=sim.definition.name)
    async def forgetful(ctx: WorkflowContext, balance: int) -> Any:
        ctx.set_update_handler("deposit", lambda amount: ctx.sleep(1))  # awaits: no completion
        ctx.set_update_handler("close", lambda: "bye")
        await ctx.wait_condition(lambda: False)

    replay = replay_history(workflow_definition(forgetful), sim.history,
                            workflow_id=sim.workflow_id, run_id=sim.run_id)
    assert replay.cause == "nondeterminism"
    assert replay.failure is not None
    assert "WorkflowExecutionUpdateCompleted" in replay.failure["message"]


def test_set_update_handler_checks_its_arguments() -> None:
    @workflow
    async def wrong(ctx: WorkflowContext, what: str) -> None:
        async def validator() -> None:
            return None

        if what == "name":
            ctx.set_update_handler("", lambda: None)
        elif what == "fn":
            ctx.set_update_handler("u", 3)  # type: ignore[arg-type]
        else:
            ctx.set_update_handler("u", lambda: None, validator=validator)

    for what, error in (("name", "InvalidName"), ("fn", "TypeError"), ("validator", "TypeError")):
        sim = EngineSim(wrong, what)
        result = sim.run_task()
        assert result.failure is not None and result.failure["type"] == error
