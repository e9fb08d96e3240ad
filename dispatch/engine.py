"""This engine process's identity: ``ENGINE_ID``, fixed at import, unique per process.

It names the holder of a leader lock (``Leadership.holder``) and the engine serving a worker
session, so a restarted process is a new engine. The rest of the process's runtime state is
listed in ``dispatch.lifecycle``.
"""

from __future__ import annotations

import os
import socket
import uuid

ENGINE_ID = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
