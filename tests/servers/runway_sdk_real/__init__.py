"""Real Runway Model SDK servers (runway-python 0.6.1) for the tests.

``RealSdkServer`` starts a model file of this folder (every_type.py by default: the
stand-in's model written for the real SDK) through launch.py in ``.venv-runway-sdk``,
the environment build.py makes from its hashed lock and the vendored SDK
(buildtools/envs.py, RUNWAY_SDK). It has the stand-in's interface
(tests/servers: RunwayTestServer): url, port, proc, wait_ready(), and from their
shared LoggedServer requests(), stderr(), stop().
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Optional

import requests

from runway_addon.core.runtimes.process import free_port
from tests.helpers import wait_until
from tests.servers import LoggedServer

HERE = Path(__file__).resolve().parent
EVERY_TYPE = HERE / "every_type.py"
HOST = "127.0.0.1"


def sdk_python() -> Path:
    """``.venv-runway-sdk``'s python, made (or checked up to date) by build.py's env builder."""
    from buildtools import envs
    return envs.ensure(envs.RUNWAY_SDK)


class RealSdkServer(LoggedServer):
    def __init__(self, workdir: Path, *, options: Optional[dict] = None,
                 env: Optional[dict] = None, model: Path = EVERY_TYPE):
        self._open(workdir)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        full_env = dict(os.environ, RW_HOST=HOST, RW_PORT=str(self.port),
                        RW_MODEL_OPTIONS=json.dumps(options or {}),
                        RW_REQUEST_LOG=str(self.log_path), **(env or {}))
        full_env.pop("PYTHONPATH", None)  # the SDK's venv, not the tests'
        self.proc = subprocess.Popen([str(sdk_python()), str(HERE / "launch.py"), str(model)],
                                     stdout=self._stderr, stderr=subprocess.STDOUT, env=full_env)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the SDK server exited ({self.proc.returncode}): "
                               f"{self.stderr()[-3000:]}")
        try:
            return requests.get(self.url + "/healthcheck", timeout=1).json()["status"] == "RUNNING"
        except (requests.RequestException, ValueError, KeyError):
            return False

    def wait_ready(self, timeout: float = 60) -> "RealSdkServer":
        if not wait_until(self._answers, timeout):
            raise TimeoutError(f"the SDK server was not ready in {timeout} s: "
                               f"{self.stderr()[-3000:]}")
        return self
