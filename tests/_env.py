"""Test-run environment, loaded as a plugin (`-p tests._env`) before Django reads settings."""

from __future__ import annotations

import os

os.environ.setdefault("SCHED_SECRET_KEY", "test-only-secret-" + "x" * 40)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SCHED_DATA_DIR", os.path.join(_ROOT, "data", "test"))
