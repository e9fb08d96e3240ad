"""The examples of docs/sdk.md's "Signal handlers and conditions" and "Versioning" sections,
run as written: each ``python`` block of a section is executed, and its workflows driven
through whole runs by the engine simulator."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sdk._runtime import replay_history
from sdk._workflow import workflow_definition
from tests.sdk.test_runtime import EngineSim

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def section_blocks(heading: str) -> list[str]:
    """The ``python`` code blocks of the ``## heading`` section, in order."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, f"no python example under {heading!r}"
    return blocks


def run_blocks(heading: str) -> list[dict[str, Any]]:
    """Execute the section's blocks one after the other (a later block sees what the earlier
    ones defined, as a reader would); the namespace after each block."""
    namespace: dict[str, Any] = {"__name__": f"docs_{heading.split()[0].lower()}"}
    after: list[dict[str, Any]] = []
    for block in section_blocks(heading):
        exec(compile(block, f"{DOC}:{heading}", "exec"), namespace)
        after.append(dict(namespace))
    return after


def test_the_signal_handlers_example_runs() -> None:
    (ns,) = run_blocks("Signal handlers and conditions")
    ship = ns["ship"]
    activities = {"ship": lambda item: ship(None, item)}

    sim = EngineSim(ns["cart"])
    sim.signal("add", "tea")  # before the first task: waits for the handler
    sim.run_task()
    sim.signal("wrap", True)  # no named handler: the dynamic one
    sim.signal("add", "cup")
    sim.signal("checkout")
    sim.drive(activities)
    assert sim.final["result"] == {"status": "shipped", "shipped": ["shipped tea",
                                                                    "shipped cup"],
                                   "ignored": ["wrap"]}
    sim.check_replay()

    abandoned = EngineSim(ns["cart"])
    abandoned.run_task()
    abandoned.signal("add", "tea")
    abandoned.drive(activities)  # nobody checks out: the hour's timer fires
    assert abandoned.final["result"] == {"status": "abandoned", "items": ["tea"],
                                         "ignored": []}
    abandoned.check_replay()


def test_the_versioning_example_runs_every_deploy() -> None:
    namespaces = run_blocks("Versioning")
    deploy1, deploy2, deploy3 = (ns["onboard"] for ns in namespaces)
    ns = namespaces[0]
    activities = {"send_email": lambda user: ns["send_email"](None, user),
                  "send_sms": lambda user: ns["send_sms"](None, user)}

    def run(fn: Any) -> EngineSim:
        sim = EngineSim(fn, "ann").drive(activities)
        sim.check_replay()
        return sim

    def replays(fn: Any, sim: EngineSim) -> Any:
        result = replay_history(workflow_definition(fn), sim.history,
                                workflow_id=sim.workflow_id, run_id=sim.run_id)
        assert result.failure is None, result.failure
        assert result.final_command is not None
        return result.final_command["result"]

    old, new, deprecated = run(deploy1), run(deploy2), run(deploy3)
    assert old.final["result"] == "emailed ann"
    assert new.final["result"] == deprecated.final["result"] == "texted ann"
    assert replays(deploy2, old) == "emailed ann"  # an old run keeps its branch
    assert replays(deploy3, new) == "texted ann"
    assert replays(deploy2, deprecated) == "texted ann"

    # A run of deploy 1 still in its day's sleep when deploy 2 comes has not passed the call:
    # it reaches it in a new workflow task, and takes the new branch.
    sleeping = EngineSim(deploy1, "bob")
    sleeping.run_task()
    sleeping.definition = workflow_definition(deploy2)
    sleeping.instance = None  # the new worker replays the history
    sleeping.drive(activities)
    assert sleeping.final["result"] == "texted bob"
