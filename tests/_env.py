"""Test-run environment, loaded as a plugin (`-p tests._env`) before Django reads settings."""

from __future__ import annotations

import os

os.environ.setdefault("SCHED_SECRET_KEY", "test-only-secret-" + "x" * 40)
os.environ.setdefault("SCHED_DATA_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "test"))
