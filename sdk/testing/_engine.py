"""The test engine as a child process, and the control channel to it.

``EngineProcess.start(time_skipping=...)`` runs ``python -m dispatch.testengine`` (sched's own
engine, from the same installation as this SDK) with an environment of its own: sched's
settings whatever the test process's ``DJANGO_SETTINGS_MODULE`` is, a SQLite file in a new
temporary folder (no ``DATABASE_URL``, no ``REDIS_URL``), a random secret key. Its stdin
carries requests, one JSON object a line; a pipe of its own carries the answers (its stdout
and stderr go to ``engine.log`` in that folder). When the test process goes away the
engine's stdin ends and it shuts itself down.

Rejected: an engine on a thread of the test process. It would share the test process's
Django settings (a user's project has its own, or none), its database connections and its
clock, and time skipping moves the clock of the whole process it runs in.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

import sdk

__all__ = ["EngineExited", "EngineProcess"]

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# Settings of the test process that must not reach the engine's.
_DROPPED = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL")


class EngineExited(RuntimeError):
    """The test engine stopped (or never started); ``log`` holds the end of its log."""

    def __init__(self, message: str, log: str) -> None:
        super().__init__(f"{message}\n--- the test engine's log (last lines) ---\n{log}"
                         if log else message)
        self.log = log


def _source_root() -> Path:
    """The folder this SDK was imported from (holding ``sdk`` and ``dispatch``)."""
    return Path(sdk.__file__).resolve().parents[1]


def engine_environment(data_dir: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _DROPPED and not k.startswith(("SCHED_", "PYTEST_"))}
    root = _source_root()
    if (root / "dispatch" / "testengine.py").exists() and root.name not in (
            "site-packages", "dist-packages"):
        # A source checkout: the engine's code is the one beside this SDK.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env.update({
        "SCHED_DATA_DIR": str(data_dir),
        "SCHED_SECRET_KEY": secrets.token_urlsafe(48),
        "SCHED_LOG_LEVEL": "WARNING",
        "SCHED_SHUTDOWN_GRACE_SECONDS": "0.5",  # its database is thrown away
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


class EngineProcess:
    """One running test engine: its URL, an admin token, and ``request()`` to control it."""

    def __init__(self, popen: subprocess.Popen[bytes], answers: IO[str], data_dir: Path,
                 keep_data: bool) -> None:
        self.popen = popen
        self.data_dir = data_dir
        self.log_path = data_dir / "engine.log"
        self.url = ""
        self.token = ""
        self.time_skipping = False
        self._keep = keep_data
        self._answers = answers
        self._ids = 0
        self._lock = threading.Lock()
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._ready: Future[dict[str, Any]] = Future()
        self._reader = threading.Thread(target=self._read, name="sched-test-engine",
                                        daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, *, time_skipping: bool, env: dict[str, str] | None = None,
              data_dir: str | os.PathLike[str] | None = None,
              timeout: float = STARTUP_TIMEOUT) -> EngineProcess:
        keep = data_dir is not None
        folder = Path(data_dir) if data_dir is not None else Path(
            tempfile.mkdtemp(prefix="sched-test-"))
        folder.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        cmd = [sys.executable, "-m", "dispatch.testengine", "--control-fd", str(write_fd)]
        if time_skipping:
            cmd.append("--time-skipping")
        if not keep:
            cmd.append("--remove-data-dir")
        try:
            with open(folder / "engine.log", "ab") as log:
                popen = subprocess.Popen(
                    cmd, cwd=folder, env=engine_environment(folder, env), stdin=subprocess.PIPE,
                    stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        engine = cls(popen, os.fdopen(read_fd, "r", encoding="utf-8"), folder, keep)
        try:
            ready = engine._ready.result(timeout=timeout)
        except Exception as exc:
            engine.stop()
            if isinstance(exc, EngineExited):
                raise
            raise EngineExited(f"the test engine did not start within {timeout:g} s",
                               engine.log_tail()) from exc
        engine.url, engine.token = str(ready["url"]), str(ready["token"])
        engine.time_skipping = bool(ready.get("time_skipping"))
        return engine

    # ---- control ------------------------------------------------------------------------

    def request(self, op: str, **fields: Any) -> Future[dict[str, Any]]:
        """Send one request; the future holds the answer (``EngineExited`` if it stopped)."""
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._ids += 1
            request_id = self._ids
            self._pending[request_id] = future
            try:
                self._send({"id": request_id, "op": op, **fields})
            except OSError:
                del self._pending[request_id]
                future.set_exception(EngineExited("the test engine has stopped",
                                                  self.log_tail()))
        return future

    def _send(self, message: dict[str, Any]) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        stdin.write((json.dumps(message) + "\n").encode())
        stdin.flush()

    def _read(self) -> None:
        for line in self._answers:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("op") == "ready":
                self._ready.set_result(message)
                continue
            with self._lock:
                future = self._pending.pop(message.get("id"), None)
            if future is None:
                continue
            if "error" in message:
                future.set_exception(RuntimeError(f"test engine: {message['error']}"))
            else:
                future.set_result(message)
        self._answers.close()
        self.popen.wait()
        gone = EngineExited(f"the test engine exited with {self.popen.returncode}",
                            self.log_tail())
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for future in (*pending, self._ready):
            if not future.done():
                future.set_exception(gone)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- stopping -----------------------------------------------------------------------

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut the engine down (gracefully, then by force) and remove its folder."""
        if self.popen.poll() is None:
            try:
                with self._lock:
                    self._send({"op": "stop"})
                assert self.popen.stdin is not None
                self.popen.stdin.close()
            except OSError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)
        elif self.popen.stdin is not None:
            self.popen.stdin.close()
        self._reader.join(timeout=timeout)
        if not self._keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
