"""Child processes of the bench: started in their own session, stopped by their own id."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any


class Child:
    """One process; ``stop`` ends it and everything in its process group."""

    def __init__(self, cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path,
                 pipe: bool = False) -> None:
        self.log = log
        self._out: IO[bytes] = open(log, "ab")
        self.popen = subprocess.Popen(
            cmd, cwd=cwd, env=env, start_new_session=True,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else self._out, stderr=self._out)
        self.pid = self.popen.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        if pipe:
            threading.Thread(target=self._pump, daemon=True, name="bench-pump").start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace")
            self._out.write(raw)
            self._out.flush()
            self._lines.put(line)
        self._lines.put(None)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def message(self, timeout: float) -> dict[str, Any]:
        """The next JSON object line the process prints (other lines are only logged)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from {self.popen.args!r} in {timeout:.0f}s "
                                   f"(log: {self.log})")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.popen.args!r} exited with {self.popen.wait()} "
                                   f"(log: {self.log})")
            line = line.strip()
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    return value

    def send(self, command: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(command.encode() + b"\n")
        self.popen.stdin.flush()

    def ask(self, command: str, timeout: float) -> dict[str, Any]:
        self.send(command)
        answer = self.message(timeout)
        if "error" in answer:
            raise RuntimeError(f"{command}: {answer['error']} (log: {self.log})")
        return answer

    def stop(self, grace: float = 15.0) -> None:
        if self.popen.stdin is not None and self.alive():
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if self.popen.poll() is not None:
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        try:  # leftovers of the group (a worker's pool children), by the group's id
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._out.close()


class Children:
    """Every child started in a block is stopped at its end, in reverse order."""

    def __init__(self) -> None:
        self.started: list[Child] = []

    def start(self, cmd: list[str], **kwargs: Any) -> Child:
        child = Child(cmd, **kwargs)
        self.started.append(child)
        return child

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self.started:
            self.started.pop().stop()
