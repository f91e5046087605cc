"""Real Cog servers for tests: one process per test predictor in tests/model_servers/cog.

A server runs as cog-http.md says: cwd = the model folder (the predictor
reference and ``.cog/openapi_schema.json`` resolve against it), ``.venv-cog/bin``
first on PATH (the server starts its worker as a bare ``python``), the
predictor in COG_PREDICT_TYPE_STUB, the port in PORT, ``--host 127.0.0.1``.

The ``cog_servers`` pool keeps at most two servers running (the test machine
has two cores); asking for a third stops the least recently used one.
Import the fixtures into a test module with ``from .cog_fixtures import *``.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # plain `pytest` does not put the repository root there
    sys.path.insert(0, str(ROOT))

from buildtools import envs  # noqa: E402
from runway_addon.core.runtimes.process import free_port  # noqa: E402
MODELS = ROOT / "tests" / "model_servers" / "cog"
HOST = "127.0.0.1"

__all__ = ["CogServer", "CogServerPool", "cog_venv", "cog_servers", "free_port", "MODELS"]


def _predictor_ref(model_dir: Path) -> str:
    m = re.search(r'^predict:\s*"?([^"\s]+)"?\s*$', (model_dir / "cog.yaml").read_text(), re.M)
    assert m, f"{model_dir}/cog.yaml has no predict: line"
    return m.group(1)


class CogServer:
    """One real Cog server process for one model folder."""

    def __init__(self, venv: Path, model_dir: Path, *, env: Optional[dict] = None):
        self.model_dir = Path(model_dir)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix=f"cog-{self.model_dir.name}-",
                                                suffix=".log", delete=False)
        full_env = dict(os.environ,
                        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                        COG_PREDICT_TYPE_STUB=_predictor_ref(self.model_dir),
                        PORT=str(self.port), **(env or {}))
        full_env.pop("PYTHONPATH", None)  # the worker must see only the venv's packages
        # Own session: stop() can end the server and its worker as one group.
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "cog.server.http", "--host", HOST],
            cwd=self.model_dir, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def health(self) -> Optional[dict]:
        try:
            return requests.get(self.url + "/health-check", timeout=2).json()
        except (requests.RequestException, ValueError):
            return None

    def wait_settled(self, timeout: float = 60.0) -> dict:
        """Wait until setup is over (READY, SETUP_FAILED, ...), not just up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Cog server exited ({self.proc.returncode}):\n{self.log()}")
            h = self.health()
            if h and h.get("status") not in ("STARTING", None):
                return h
            time.sleep(0.1)
        raise TimeoutError(f"Cog server for {self.model_dir.name} not ready:\n{self.log()}")

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()
        os.unlink(self._log.name)


class CogServerPool:
    """Servers by model name, started on first use, at most ``limit`` at once."""

    def __init__(self, venv: Path, limit: int = 2):
        self.venv, self.limit = venv, limit
        self._running: "OrderedDict[str, CogServer]" = OrderedDict()

    def get(self, name: str) -> CogServer:
        server = self._running.get(name)
        if server is not None and server.proc.poll() is None:
            self._running.move_to_end(name)
            return server
        while len(self._running) >= self.limit:
            self._running.popitem(last=False)[1].stop()
        server = CogServer(self.venv, MODELS / name)
        self._running[name] = server
        server.wait_settled()
        return server

    def start_copy(self, name: str, tmp_path: Path, *, drop_schema: bool = False) -> CogServer:
        """A server for a copy of a model folder (e.g. without its schema file),
        outside the pool: the caller stops it."""
        target = tmp_path / name
        shutil.copytree(MODELS / name, target)
        if drop_schema:
            shutil.rmtree(target / ".cog")
        server = CogServer(self.venv, target)
        server.wait_settled()
        return server

    def stop_all(self) -> None:
        while self._running:
            self._running.popitem()[1].stop()


@pytest.fixture(scope="session")
def cog_venv() -> Path:
    return envs.ensure(envs.COG).parent.parent


@pytest.fixture(scope="session")
def cog_servers(cog_venv):
    pool = CogServerPool(cog_venv)
    yield pool
    pool.stop_all()
