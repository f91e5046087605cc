"""Start tests/servers/runway_sdk_server.py as a real process on a free loopback port.

Imported by test_runway_client.py; kept apart so other Runway tests can reuse it.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from tests.servers import stop_process

SERVER = Path(__file__).resolve().parents[1] / "servers" / "runway_sdk_server.py"
HOST = "127.0.0.1"


class RunwayTestServer:
    """One server process. ``requests()`` lists what it received (its request log)."""

    def __init__(self, workdir: Path, *, options: Optional[dict] = None, args=(),
                 env: Optional[dict] = None, python: str = sys.executable):
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "requests.jsonl"
        self.stderr_path = workdir / "stderr.txt"
        full_env = dict(os.environ, RW_PORT="0", RW_HOST=HOST,
                        RW_MODEL_OPTIONS=json.dumps(options or {}), **(env or {}))
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [python, str(SERVER), "--request-log", str(self.log_path), *args],
            stdout=subprocess.PIPE, stderr=self._stderr, env=full_env, text=True)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = int(self.wait_line("RUNWAY_TEST_SERVER_PORT=", 15).split("=", 1)[1])
        self.url = f"http://{HOST}:{self.port}"

    def _pump(self):
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"server printed no {prefix!r} in {timeout} s") from None
            if line is None:
                raise RuntimeError(f"server exited ({self.proc.wait()}): {self.stderr()}")
            if line.startswith(prefix):
                return line

    def wait_ready(self, timeout: float = 15) -> "RunwayTestServer":
        self.wait_line("RUNWAY_TEST_SERVER_READY", timeout)
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def requests(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def stop(self):
        stop_process(self.proc)
        self._stderr.close()
