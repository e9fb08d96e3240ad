"""The workflow of docs/sdk.md's "Updates" example, as written there (the worker of
``test_updates.test_the_documented_example_runs_against_an_engine`` serves it)."""

from __future__ import annotations

import re
from pathlib import Path

_DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
_TEXT = _DOC.read_text(encoding="utf-8")
_SECTION = _TEXT[_TEXT.index("\n## Updates\n"):]
_BLOCK = re.search(r"```python\n(.*?)```", _SECTION, flags=re.DOTALL)
assert _BLOCK is not None
exec(compile(_BLOCK.group(1), f"{_DOC}:Updates", "exec"), globals())
