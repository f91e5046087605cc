"""The local process runtime: a Cog model folder served by the real Cog server,
run with the model's own Python environment. It needs nothing installed but a
Python of the version the model asks for.

A model folder holds ``predict.py``, ``cog.yaml`` (``build.python_version``,
``predict: "predict.py:Predictor"``), ``requirements.lock`` (pip's
``--require-hashes`` format, every distribution pinned, ``cog`` included) and
``.cog/openapi_schema.json``.

Environments are made by ``model_envs`` (one per Python version and lock,
under ENV_ROOT). The cog.yaml reader is ``cog_yaml``, the interpreter finder
``interpreters``, OS process control and the owner rule ``processes``.

Layout of a session on disk::

    RUNTIME_DIR/<session id>/owner.json   who started the session (for orphan cleanup)
    RUNTIME_DIR/<session id>/server.pid   the running server: pid, start time, command
    RUNTIME_DIR/<session id>/server.log   pip's and the server's output
    RUNTIME_DIR/<session id>/shared/      files that travel as bare paths
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Union

import requests

from ..protocols.base import HealthState
from ..protocols.cog import setup_seconds as _setup_seconds  # noqa: F401 (the benches)
from ..spec import Protocol
from .base import ModelSession, RuntimeFailed, SessionEvent, SessionState, _Stopped
from .cog_yaml import read_cog_yaml
from .interpreters import find_python  # noqa: F401
from .model_envs import ENV_STAMP, ModelEnvironment  # noqa: F401
from .processes import (HOST, OWNER_TAG, alive_as_recorded, free_port,  # noqa: F401
                        kill_process_tree, owner_alive, owner_record, popen_group_kwargs,
                        process_cmdline, process_start_time, read_json, write_json)
# Older names, kept for the benches and tests that use them.
from .processes import group_alive as _group_alive  # noqa: F401
from .processes import owner_record as _owner  # noqa: F401
from .processes import output_tail as _tail
from .processes import port_is_free as _port_is_free
from .processes import wait_until as _wait_until  # noqa: F401

__all__ = ["ModelEnvironment", "ProcessSession", "cleanup_orphans", "find_python",
           "read_cog_yaml", "default_cache_dir", "free_port", "server_command"]

_WINDOWS = os.name == "nt"

PathLike = Union[str, os.PathLike]


def default_cache_dir() -> Path:
    """Where environments and sessions live when the caller names no folder
    (the add-on passes the extension's user cache instead)."""
    if _WINDOWS:
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "runway-blender"


def server_command(python: PathLike) -> list[str]:
    """The Cog server, as cog-http.md runs it; the port comes from PORT."""
    return [str(python), "-m", "cog.server.http", "--host", HOST]


def server_env(env_dir: Path, predictor: str, port: int,
               extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = dict(os.environ)
    # Blender (or our own venv) may point Python elsewhere: the server and its
    # worker must see only the model environment's packages.
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE"):
        env.pop(name, None)
    bin_dir = env_dir / ("Scripts" if _WINDOWS else "bin")
    # The server starts its worker as a bare `python`: it must be this env's.
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(env_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["COG_PREDICT_TYPE_STUB"] = predictor
    env["PORT"] = str(port)
    env["RUNWAY_OWNER"] = OWNER_TAG
    env.update(extra or {})
    return env


def _readable(log: str) -> str:
    """coglet logs JSON lines; show them as "LEVEL message (error)" lines."""
    out = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
                fields = rec["fields"]
                text = f"{rec.get('level', '')} {fields.pop('message', '')}"
                if "error" in fields:
                    text += f" ({fields['error']})"
                line = text
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        out.append(line)
    return "\n".join(out) + ("\n" if out else "")


# --------------------------------------------------------------------------- sessions

class _PortTaken(Exception):
    """The server could not bind its port: someone took it after we checked."""


class ProcessSession(ModelSession):
    """A Cog model folder served by a local ``python -m cog.server.http``.

    ``start()`` (on a worker thread): PREPARING (the environment) -> STARTING
    (server up, model setting up) -> RUNNING (health says READY). ``stop()``
    from any thread, in any state, ends the server's whole process group, or
    abandons the install, and removes the session folder.
    """

    protocol = Protocol.COG
    stop_grace = 3.0  # after /shutdown or SIGTERM, before the next step (s)
    install_timeout = 3600.0  # environments with torch take a while
    port_attempts = 3
    watch_interval = 3.0  # health checks while RUNNING (s); process exit is seen within 1 s

    def __init__(self, model_dir: PathLike, *, env_root: Optional[PathLike] = None,
                 runtime_dir: Optional[PathLike] = None, name: Optional[str] = None,
                 on_event=None, env: Optional[dict[str, str]] = None,
                 python: Optional[str] = None, watch_owner: bool = True):
        self.model_dir = Path(model_dir).resolve()
        # A watcher in the server's group ends it when this process dies (POSIX).
        self.watch_owner = watch_owner and not _WINDOWS
        super().__init__(name or self.model_dir.name, on_event)
        cache = default_cache_dir()
        self.env_root = Path(env_root).resolve() if env_root else cache / "model-envs"
        self.runtime_dir = Path(runtime_dir).resolve() if runtime_dir else cache / "sessions"
        self.extra_env = dict(env or {})
        self.python_version, self.predictor = read_cog_yaml(self.model_dir)
        self.environment = ModelEnvironment(self.model_dir, self.env_root, python=python)
        self.port: Optional[int] = None
        self.pid: Optional[int] = None
        self.session_dir: Optional[Path] = None
        self.setup_seconds: Optional[float] = None  # the model's own setup, from Cog
        self._proc: Optional[subprocess.Popen] = None
        self._log = None
        self._final_logs = ""
        self._release_lock = threading.Lock()
        self._monitor: Optional[threading.Thread] = None

    # ---- start (the lifecycle is ModelSession's; these are the steps)
    def _reset(self) -> None:
        self._final_logs = ""
        self.environment._abort.clear()

    def _start(self, timeout: float) -> None:
        """Prepare the environment, start the server and wait until READY.

        ``timeout`` bounds the server start and the model's setup; the install
        is bounded by ``install_timeout``.
        """
        with self._lock:
            self._make_session_dir()
        self._advance(SessionState.PREPARING, "preparing the model's environment")
        self.environment.ensure(
            lambda msg, d, t: self._advance(SessionState.PREPARING, msg, d, t), self._log,
            timeout=self.install_timeout)
        self._advance(SessionState.STARTING, "starting the model server")
        self._launch(time.monotonic() + timeout)
        self._advance(SessionState.RUNNING, f"ready at {self.url}")
        self._monitor = threading.Thread(target=self._watch, name=f"runway-watch-{self.name}",
                                         daemon=True)
        self._monitor.start()

    def _make_session_dir(self) -> None:
        sid = f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', self.name)[:40]}-{secrets.token_hex(4)}"
        self.session_dir = self.runtime_dir / sid
        (self.session_dir / "shared").mkdir(parents=True)
        self.shared_dir = str(self.session_dir / "shared")
        write_json(self.session_dir / "owner.json", {**owner_record(), "model_dir": str(self.model_dir)})
        self._log = open(self.session_dir / "server.log", "a", encoding="utf-8",
                         errors="replace")

    def _launch(self, deadline: float) -> None:
        """Start the server on a free port and wait for READY; pick another
        port when someone took ours between the check and the bind."""
        for _ in range(self.port_attempts):
            port = self._pick_port()
            self._spawn(port)
            try:
                self._wait_ready(deadline)
                return
            except _PortTaken:
                self._advance(SessionState.STARTING, f"port {port} was taken; trying another")
                self._kill_server()
        raise RuntimeFailed(f"no free port for model {self.name!r} after "
                            f"{self.port_attempts} tries", hint="Try again.")

    @staticmethod
    def _candidate_ports() -> Iterator[int]:
        while True:
            yield free_port()

    def _pick_port(self) -> int:
        for port in self._candidate_ports():
            if _port_is_free(port):
                return port
        raise AssertionError("unreachable")

    def _spawn(self, port: int) -> None:
        argv = server_command(self.environment.python)
        if self.watch_owner:  # the server must not outlive us (a farm kills Blender alone)
            me = os.getpid()
            argv = [str(self.environment.python), str(Path(__file__).with_name("owner_watch.py")),
                    str(me), process_start_time(me) or "", "--", *argv]
        with self._lock:
            if self._stop_requested.is_set():
                raise _Stopped()
            self._log.write(f"[runway] starting {' '.join(argv)} on port {port}\n")
            self._log.flush()
            self._proc = subprocess.Popen(
                argv, cwd=str(self.model_dir), stdin=subprocess.DEVNULL,
                env=server_env(self.environment.path, self.predictor, port, self.extra_env),
                stdout=self._log, stderr=subprocess.STDOUT, **popen_group_kwargs())
            self.pid, self.port = self._proc.pid, port
            self.url = f"http://{HOST}:{port}"

            write_json(self.session_dir / "server.pid", {
                **owner_record(), "pid": self.pid, "start_time": process_start_time(self.pid),
                "cmdline": argv, "port": port, "model_dir": str(self.model_dir),
                "session": self.session_dir.name})

    def _health(self, timeout: float = 1.0) -> Optional[dict]:
        try:
            r = requests.get(f"{self.url}/health-check", timeout=timeout)
            return r.json() if r.ok else None
        except (requests.RequestException, ValueError):
            return None

    def _bound_by_us(self) -> bool:
        # coglet logs this line only once its listener is bound; it proves the
        # answer we saw is ours, not from whoever else might hold the port.
        return f"server on {HOST}:{self.port}" in self._read_raw_log()

    def _wait_ready(self, deadline: float) -> None:
        """READY through the Cog client, watching our server between polls."""
        from ..client import connect

        answered_since = None

        def check(health) -> bool:
            nonlocal answered_since
            rc = self._proc.poll()
            if rc is not None:
                log = self._read_log()
                if "Address already in use" in log.split("[runway] starting")[-1]:
                    raise _PortTaken()
                raise RuntimeFailed(
                    f"The model server for {self.name!r} exited (code {rc}) before it was ready.",
                    hint="See the log for the cause.", details=_tail(log))
            if health.state is HealthState.UNREACHABLE:
                return True  # nothing to trust or distrust yet
            answered_since = answered_since or time.monotonic()
            return self._bound_by_us() or time.monotonic() - answered_since > 2.0

        with connect(self.url, protocol=self.protocol) as client:
            health = self._await_ready(client, deadline - time.monotonic(), check)
        self.setup_seconds = health.setup_seconds

    def _watch(self) -> None:
        """While RUNNING: a server that exits, or whose worker died, is FAILED."""
        proc, bad, last_check = self._proc, 0, time.monotonic()
        while proc is not None and not self._stop_requested.is_set():
            try:
                proc.wait(timeout=min(1.0, self.watch_interval))
            except subprocess.TimeoutExpired:
                if time.monotonic() - last_check < self.watch_interval:
                    continue
                last_check = time.monotonic()
                status = (self._health(timeout=3.0) or {}).get("status")
                # UNHEALTHY is what coglet says once the worker process is gone.
                bad = bad + 1 if status in ("DEFUNCT", "UNHEALTHY") else 0
                if bad < 2:
                    continue
                why = f"Model {self.name!r} stopped working (its server says {status})."
            else:
                why = f"The model server for {self.name!r} exited (code {proc.returncode})."
            reason = f"{why}\n{_tail(self._read_log())}"
            with self._lock:
                if self._stop_requested.is_set() or self.state is not SessionState.RUNNING:
                    return
                # FAILED at once, and start()'s progress steps are refused from now on.
                self._stop_requested.set()
                self.state, self.reason = SessionState.FAILED, reason
            self._release()
            if self._on_event:
                self._on_event(SessionEvent(SessionState.FAILED, reason, time=time.time()))
            return

    # ---- stop
    def _stop_steps(self, was_running: bool) -> None:
        self.environment.abort()  # a pip install in progress dies now
        if was_running:
            self._request_shutdown()
        self._release()

    def _request_shutdown(self) -> None:
        """Ask Cog to exit on its own (the model can free what it holds)."""
        proc = self._proc
        if proc is None or not self.url:
            return
        try:
            requests.post(f"{self.url}/shutdown", timeout=1.0)
        except requests.RequestException:
            return
        try:
            proc.wait(timeout=self.stop_grace)
        except subprocess.TimeoutExpired:
            pass

    def _kill_server(self) -> None:
        proc = self._proc
        if proc is None:
            return
        # The leader is our child: until it is reaped its pid (the group id)
        # cannot be reused. Once reaped (it exited on /shutdown), signal the
        # group only while members remain, which keep the id reserved too.
        if proc.returncode is None or _group_alive(proc.pid):
            kill_process_tree(proc.pid, grace=self.stop_grace)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
        with self._lock:
            self._proc = None
        if self.session_dir is not None:
            try:
                (self.session_dir / "server.pid").unlink()
            except OSError:
                pass

    def _release(self) -> None:
        """Free everything: server group, pid file, log handle, session folder.
        Idempotent and safe from several threads."""
        with self._release_lock:
            self._kill_server()
            with self._lock:
                session_dir, log = self.session_dir, self._log
                if session_dir is None:
                    return
                self._final_logs = self._read_raw_log()  # logs() stays readable after stop
                self.session_dir = self._log = None
                self.shared_dir = None
                self.url = None
            if log is not None:
                log.close()
            shutil.rmtree(session_dir, ignore_errors=True)

    # ---- logs
    def _read_log(self) -> str:
        return _readable(self._read_raw_log())

    def _read_raw_log(self) -> str:
        with self._lock:
            d = self.session_dir
            if d is None:
                return self._final_logs
        try:
            return (d / "server.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return self._final_logs

    def logs(self) -> str:
        return self._read_log()


# --------------------------------------------------------------------------- orphans

def cleanup_orphans(runtime_dir: Optional[PathLike] = None) -> list[str]:
    """Stop model servers left behind by a crashed Blender; call at start-up.

    A server is stopped only when its pid file carries our tag, its owner
    (the Blender that started it) is gone, and its pid, start time and command
    line still match the pid file; anything else is never signalled. Folders
    of dead owners are removed either way. Returns one line per server stopped.
    """
    root = Path(runtime_dir) if runtime_dir else default_cache_dir() / "sessions"
    stopped: list[str] = []
    if not root.is_dir():
        return stopped
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        owner = read_json(d / "owner.json")
        server = read_json(d / "server.pid")
        who = server or owner
        if who is None:
            # A folder being created right now has no owner.json for a moment.
            if time.time() - d.stat().st_mtime > 60:
                shutil.rmtree(d, ignore_errors=True)
            continue
        if who.get("tag") != OWNER_TAG:
            continue  # not ours: leave it
        if owner_alive(who.get("owner_pid"), who.get("owner_start_time"), who.get("host")):
            continue  # its Blender still runs (maybe another instance): its session
        if server and alive_as_recorded(server.get("pid"), server.get("start_time"),
                                         server.get("cmdline")):
            if kill_process_tree(server["pid"]):
                stopped.append(f"stopped model server pid {server['pid']} on port "
                               f"{server.get('port')} ({server.get('model_dir')})")
            else:
                continue  # keep the pid file: try again next time
        shutil.rmtree(d, ignore_errors=True)
    return stopped
