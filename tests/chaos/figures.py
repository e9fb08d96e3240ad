"""The figures a chaos run reports (docs/reliability.md quotes the last run's).

Each test merges what it measured into one JSON file, ``$CHAOS_FIGURES`` or
``data/chaos-figures.json``; ``make chaos`` empties it first and prints it at the end.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def path() -> Path:
    return Path(os.environ.get("CHAOS_FIGURES") or ROOT / "data" / "chaos-figures.json")


def record(section: str, **values: Any) -> None:
    """Merge ``values`` into ``section`` of the figures file (numbers under the same name
    add up, so repeated tests report their totals)."""
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        figures: dict[str, dict[str, Any]] = json.loads(text) if text.strip() else {}
        current = figures.setdefault(section, {})
        for name, value in values.items():
            old = current.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and isinstance(old, int | float) and name.endswith("_total"):
                current[name] = old + value
            else:
                current[name] = value
        handle.seek(0)
        handle.truncate()
        json.dump(figures, handle, indent=2, sort_keys=True)
