"""This engine process's identity."""

from __future__ import annotations

import os
import socket
import uuid

ENGINE_ID = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
