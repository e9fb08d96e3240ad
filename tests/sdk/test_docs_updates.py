"""The example of docs/sdk.md's "Updates" section, run as written: its workflow driven
through the documented calls by the engine simulator (validators asked as a worker asks
them), then replayed."""

from __future__ import annotations

from sdk._queries import UPDATE_REJECTED
from tests.sdk.test_docs_handlers import section_blocks
from tests.sdk.test_runtime import EngineSim


def test_the_updates_example_answers_as_documented() -> None:
    namespace: dict[str, object] = {"__name__": "docs_updates"}
    exec(compile(section_blocks("Updates")[0], "docs/sdk.md:Updates", "exec"), namespace)
    sim = EngineSim(namespace["shop"], "ann")
    sim.run_task()
    outcomes: dict[str, object] = {}

    def update(update_id: str, name: str, *args: object) -> object:
        """As the engine does: an update id known answers its outcome; else validate on
        the worker's instance, accept, run the workflow."""
        if update_id in outcomes:
            return outcomes[update_id]
        assert sim.instance is not None
        answer = sim.instance.validate_update(name, list(args))
        if answer.error is not None:
            return answer
        sim.update(update_id, name, *args)
        sim.drive({"price": lambda items: 3 * len(items)})
        done = [e["attributes"] for e in sim.history
                if e["event_type"] == "WorkflowExecutionUpdateCompleted"
                and e["attributes"]["update_id"] == update_id]
        outcomes[update_id] = done[0]["result"]
        return outcomes[update_id]

    assert update("u1", "add", "tea") == 1
    rejected = update("u2", "add", "tea")
    assert getattr(rejected, "error", None) == UPDATE_REJECTED
    assert getattr(rejected, "message", "") == "'tea' is in the cart already"
    assert update("add-cup", "add", "cup") == 2
    assert update("add-cup", "add", "cup") == 2
    assert sim.instance is not None
    assert sim.instance.validate_update("checkout", []).error is None
    sim.update("u3", "checkout")
    sim.drive({"price": lambda items: 3 * len(items)})
    assert sim.final["result"] == {"owner": "ann", "items": ["tea", "cup"], "paid": 6}
    completed = [e["attributes"]["result"] for e in sim.history
                 if e["event_type"] == "WorkflowExecutionUpdateCompleted"]
    assert completed == [1, 2, "ann paid 6"]
    sim.check_replay()


def test_an_empty_checkout_fails_the_update_not_the_run() -> None:
    namespace: dict[str, object] = {"__name__": "docs_updates"}
    exec(compile(section_blocks("Updates")[0], "docs/sdk.md:Updates", "exec"), namespace)
    sim = EngineSim(namespace["shop"], "bob")
    sim.run_task()
    sim.update("u1", "checkout")
    sim.run_task()
    (failure,) = [e["attributes"]["failure"] for e in sim.history
                  if e["event_type"] == "WorkflowExecutionUpdateCompleted"]
    assert failure["type"] == "EmptyCart"
    assert sim.state.is_open
