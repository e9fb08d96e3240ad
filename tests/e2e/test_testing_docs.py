"""The example of "Testing workflows" in docs/sdk.md, run as a user's test module would be:
by pytest in a folder of its own, with sched's plugin, without sched's settings, and with a
database URL of "the user's" that the test engine must not touch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def example() -> str:
    doc = (ROOT / "docs" / "sdk.md").read_text()
    section = doc.split("\n## Testing workflows\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(# test_reminders\.py\n.*?)```", section, re.S)
    assert match, "the section's first example is a test module"
    return match.group(1)


def test_the_documented_test_module_passes(tmp_path: Path) -> None:
    (tmp_path / "test_reminders.py").write_text(example())
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the user's project, not ours
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "SCHED_")) and k != "DJANGO_SETTINGS_MODULE"}
    env["DATABASE_URL"] = "postgres://nobody@127.0.0.1:1/the_users_database"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "sdk.testing.pytest_plugin",
         "-p", "no:cacheprovider", "test_reminders.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
