"""Servers the tests start as processes: real Cog servers for the test predictors in
tests/model_servers/cog, and launchers for the stand-ins beside this file (written from
a documented contract where the real service cannot run here).

The fixtures that hand these out are in tests/conftest.py (``cog_venv``, ``cog_servers``)
and in the test modules that use them.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import requests

from runway_addon.core.runtimes.process import free_port, read_cog_yaml
from tests.helpers import ROOT, stop_process

HOST = "127.0.0.1"
COG_MODELS = ROOT / "tests" / "model_servers" / "cog"
RUNWAY_SDK_SERVER = Path(__file__).resolve().parent / "runway_sdk_server.py"
REPLICATE_SERVER = Path(__file__).resolve().parent / "replicate_server.py"
REPLICATE_TOKEN = "r8_StandInToken_0123456789abcdef"  # what the stand-in accepts; must never leak


# --------------------------------------------------------------------------- real Cog servers

class CogServer:
    """One real Cog server process for one model folder, run as cog-http.md says:
    cwd = the model folder (the predictor reference and ``.cog/openapi_schema.json``
    resolve against it), ``.venv-cog/bin`` first on PATH (the server starts its worker
    as a bare ``python``), the predictor in COG_PREDICT_TYPE_STUB, the port in PORT,
    ``--host 127.0.0.1``, then ``args`` (e.g. ``--upload-url URL``)."""

    def __init__(self, venv: Path, model_dir: Path, *, env: Optional[dict] = None,
                 args: tuple = ()):
        self.model_dir = Path(model_dir)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix=f"cog-{self.model_dir.name}-",
                                                suffix=".log", delete=False)
        full_env = dict(os.environ,
                        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                        COG_PREDICT_TYPE_STUB=read_cog_yaml(self.model_dir)[1],
                        PORT=str(self.port), **(env or {}))
        full_env.pop("PYTHONPATH", None)  # the worker must see only the venv's packages
        # Own session: stop() can end the server and its worker as one group.
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "cog.server.http", "--host", HOST, *args],
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
    """Servers by model name, started on first use, at most ``limit`` at once (the
    test machine has two cores): asking for one more stops the least recently used."""

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
        server = CogServer(self.venv, COG_MODELS / name)
        self._running[name] = server
        server.wait_settled()
        return server

    def start_copy(self, name: str, tmp_path: Path, *, drop_schema: bool = False) -> CogServer:
        """A server for a copy of a model folder (e.g. without its schema file),
        outside the pool: the caller stops it."""
        target = tmp_path / name
        shutil.copytree(COG_MODELS / name, target)
        if drop_schema:
            shutil.rmtree(target / ".cog")
        server = CogServer(self.venv, target)
        server.wait_settled()
        return server

    def stop_all(self) -> None:
        while self._running:
            self._running.popitem()[1].stop()


# --------------------------------------------------------------------------- stand-ins

class LoggedServer:
    """A Runway model server process kept in ``workdir``: what it received in
    requests.jsonl (one JSON line a request) and its stderr in stderr.txt. The stand-in
    and the real SDK servers (runway_sdk_real) share it, so the tests read both alike;
    a subclass opens the folder with ``_open(workdir)`` and starts ``self.proc``."""

    def _open(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "requests.jsonl"
        self.stderr_path = workdir / "stderr.txt"
        self._stderr = open(self.stderr_path, "wb")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def requests(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def stop(self):
        stop_process(self.proc)
        self._stderr.close()


class RunwayTestServer(LoggedServer):
    """runway_sdk_server.py as a real process on a free loopback port.
    ``requests()`` lists what it received (its request log)."""

    def __init__(self, workdir: Path, *, options: Optional[dict] = None, args=(),
                 env: Optional[dict] = None, python: str = sys.executable):
        self._open(workdir)
        full_env = dict(os.environ, RW_PORT="0", RW_HOST=HOST,
                        RW_MODEL_OPTIONS=json.dumps(options or {}), **(env or {}))
        self.proc = subprocess.Popen(
            [python, str(RUNWAY_SDK_SERVER), "--request-log", str(self.log_path), *args],
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


class ReplicateStandIn:
    """replicate_server.py as a real process on free loopback ports."""

    def __init__(self, token: str = REPLICATE_TOKEN):
        self.proc = subprocess.Popen([sys.executable, str(REPLICATE_SERVER), "--token", token],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("REPLICATE_TEST_SERVER"):
            self.proc.kill()
            raise RuntimeError(f"stand-in did not start: {line}{self.proc.stderr.read()}")
        ports = dict(part.split("=") for part in line.split()[1:])
        self.url = f"http://127.0.0.1:{ports['api']}"
        self.delivery = f"http://127.0.0.1:{ports['delivery']}"

    def requests(self, since: int = 0) -> list[dict]:
        return requests.get(self.url + "/_test/requests", timeout=5).json()[since:]

    def mark(self) -> int:
        """Where the request log ends now: pass it to requests(since=...)."""
        return len(self.requests())

    def configure(self, **config) -> None:
        requests.post(self.url + "/_test/config", json=config, timeout=5).raise_for_status()

    def predictions(self) -> dict:
        return requests.get(self.url + "/_test/predictions", timeout=5).json()

    def files(self) -> dict:
        return requests.get(self.url + "/_test/files", timeout=5).json()

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc.stdout.close()
        self.proc.stderr.close()
