"""The local process runtime: a Cog model folder served by the real Cog server,
run with the model's own Python environment. It needs nothing installed but a
Python of the version the model asks for.

A model folder holds ``predict.py``, ``cog.yaml`` (``build.python_version``,
``predict: "predict.py:Predictor"``), ``requirements.lock`` (pip's
``--require-hashes`` format, every distribution pinned, ``cog`` included) and
``.cog/openapi_schema.json``.

Layout on disk::

    ENV_ROOT/py3.11-<lock hash>/          one environment per (Python, lock), reused
    ENV_ROOT/py3.11-<lock hash>/.runway-env.json   stamp: written last, so a killed
                                          install never looks complete
    RUNTIME_DIR/<session id>/owner.json   who started the session (for orphan cleanup)
    RUNTIME_DIR/<session id>/server.pid   the running server: pid, start time, command
    RUNTIME_DIR/<session id>/server.log   pip's and the server's output
    RUNTIME_DIR/<session id>/shared/      files that travel as bare paths

Process control is POSIX first (own session, ``os.killpg``); on Windows the
server gets CREATE_NEW_PROCESS_GROUP and is ended with ``taskkill /T``. Only
Linux is tested.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import requests

from ..spec import Protocol
from .base import ModelSession, RuntimeFailed, SessionEvent, SessionState, StartAborted

__all__ = ["ModelEnvironment", "ProcessSession", "cleanup_orphans", "find_python",
           "read_cog_yaml", "default_cache_dir", "free_port", "server_command"]

HOST = "127.0.0.1"
OWNER_TAG = "runway-blender"  # marks pid files (and server env) as ours
ENV_STAMP = ".runway-env.json"
LOCK_FILE = "requirements.lock"
LOG_TAIL_LINES = 30
_WINDOWS = os.name == "nt"
_LINUX = sys.platform.startswith("linux")

PathLike = Union[str, os.PathLike]
Progress = Callable[[str, Optional[int], Optional[int]], None]


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


# --------------------------------------------------------------------------- model folder

def read_cog_yaml(model_dir: PathLike) -> tuple[str, str]:
    """``(python_version, predictor_ref)`` from the folder's cog.yaml.

    A small line parser rather than PyYAML: the add-on's core must not need it,
    and these two keys are plain scalars.
    """
    path = Path(model_dir) / "cog.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RuntimeFailed(f"{path} cannot be read ({e.strerror})",
                            hint="Choose a model folder that holds cog.yaml and predict.py.")
    except UnicodeDecodeError as e:
        raise RuntimeFailed(f"{path} is not UTF-8 text (byte {e.start} cannot be read)",
                            hint="Save cog.yaml as UTF-8.") from None
    version = re.search(r"^\s+python_version:\s*[\"']?(\d+\.\d+)", text, re.M)
    predict = re.search(r"^predict:\s*[\"']?([^\"'\s#]+)", text, re.M)
    if not predict:
        raise RuntimeFailed(f"{path} has no 'predict:' line",
                            hint='Add for example: predict: "predict.py:Predictor"')
    return (version.group(1) if version else "3.11"), predict.group(1)


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


# --------------------------------------------------------------------------- Python interpreters

_python_cache: dict[str, str] = {}


def _candidates(version: str) -> Iterator[str]:
    exe = f"python{version}"
    found = shutil.which(exe)
    if found:
        yield found
    # pyenv keeps every version under $PYENV_ROOT/versions/X.Y.Z even when the
    # shim on PATH points at another one.
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    versions = sorted((pyenv_root / "versions").glob(f"{version}.*"),
                      key=lambda p: [int(x) if x.isdigit() else 0 for x in
                                     p.name.split(".")], reverse=True)
    for v in versions:
        yield str(v / "bin" / exe)
    if _WINDOWS and shutil.which("py"):
        yield f"py -{version}"
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            yield found
    yield sys.executable


def find_python(version: str) -> str:
    """The path of a Python ``version`` ("3.11") that can create venvs.

    Looks on PATH (``python3.11``), in pyenv's versions, the ``py`` launcher on
    Windows, then ``python3``/``python``/this interpreter if their version fits.
    """
    if version in _python_cache:
        return _python_cache[version]
    probe = ("import sys, venv, ensurepip; "
             "print('%d.%d' % sys.version_info[:2]); print(sys.executable)")
    for cand in _candidates(version):
        argv = cand.split(" ") if cand.startswith("py -") else [cand]
        try:
            out = subprocess.run([*argv, "-c", probe], capture_output=True, text=True,
                                 timeout=30, env=server_env_clean())
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = out.stdout.split()
        if out.returncode == 0 and len(lines) >= 2 and lines[0] == version:
            # The real executable, not a pyenv shim: quicker, and venv's `home`.
            _python_cache[version] = lines[1]
            return lines[1]
    hint = (f"Install Python {version} (python.org, your package manager such as "
            f"'apt install python{version} python{version}-venv', or 'pyenv install {version}') "
            f"and make 'python{version}' available on PATH.")
    raise RuntimeFailed(f"The model needs Python {version}, which was not found.", hint=hint)


def server_env_clean() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    return env


# --------------------------------------------------------------------------- processes

def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> Optional[str]:
    """An opaque token that changes when ``pid`` is reused; None when no such process."""
    if _LINUX:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # Field 22 (start time in clock ticks since boot), counted after the
        # command name, which may itself hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        return f"{_boot_id()}:{fields[19]}"
    if _WINDOWS:
        return _windows_start_time(pid)
    try:  # macOS and other POSIX systems
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _windows_start_time(pid: int) -> Optional[str]:
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return None
    try:
        times = [wintypes.FILETIME() for _ in range(4)]
        if not kernel32.GetProcessTimes(handle, *[ctypes.byref(t) for t in times]):
            return None
        return f"{times[0].dwHighDateTime}:{times[0].dwLowDateTime}"
    finally:
        kernel32.CloseHandle(handle)


def process_cmdline(pid: int) -> Optional[list[str]]:
    """The command line of ``pid`` as a list, or None where it cannot be read."""
    if _LINUX:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]
    if _WINDOWS:
        return None  # not checked on Windows: pid + creation time must do
    try:
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().split() or None


def _group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in process group ``pgid``."""
    if _LINUX:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            # fields[0] = state, fields[2] = pgrp; zombies wait for their reaper.
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


def kill_process_tree(pid: int, grace: float = 3.0) -> bool:
    """End the process group led by ``pid`` (SIGTERM, SIGKILL after ``grace``).

    True when nothing of it is left. The caller keeps ``pid`` unreaped (its own
    child) or has checked that it is still the process it means, so the group
    id cannot belong to anyone else.
    """
    if _WINDOWS:
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], capture_output=True)
        return _wait_until(lambda: process_start_time(pid) is None, grace)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if _wait_until(lambda: not _group_alive(pid), wait):
            return True
    return False


def _popen_group_kwargs() -> dict:
    """Start a child as leader of its own group, so the server and the worker
    it spawns can be ended together, and Ctrl+C in a terminal does not reach it."""
    if _WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


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


# --------------------------------------------------------------------------- environments

class ModelEnvironment:
    """The model's own Python environment, made from its ``requirements.lock``.

    Created on first use under ``root`` in a temporary folder, stamped, then
    renamed into place, so a killed install never looks complete; reused when
    the stamp is there (a file read). ``abort()`` from another thread kills a
    running install and removes what it made.
    """

    def __init__(self, model_dir: PathLike, root: PathLike, *, python: Optional[str] = None):
        self.model_dir = Path(model_dir).resolve()
        self.root = Path(root).resolve()  # the server runs in the model folder
        self.lock_path = self.model_dir / LOCK_FILE
        self.python_version, _ = read_cog_yaml(self.model_dir)
        self._python = python  # an explicit interpreter (tests, preferences)
        try:
            lock = self.lock_path.read_bytes()
        except OSError:
            raise RuntimeFailed(
                f"{self.lock_path} is missing",
                hint="A model folder needs a hash-pinned requirements.lock (cog included).")
        self.lock_sha256 = hashlib.sha256(lock).hexdigest()
        self.packages = len(re.findall(rb"^[A-Za-z0-9][A-Za-z0-9._-]*\s*==", lock, re.M))
        # One environment per Python version and lock content: two model
        # folders with the same lock share it.
        self.key = f"py{self.python_version}-{self.lock_sha256[:16]}"
        self.path = self.root / self.key
        self._abort = threading.Event()
        self._timeout = 3600.0
        self._proc: Optional[subprocess.Popen] = None
        self._proc_lock = threading.Lock()

    @property
    def bin_dir(self) -> Path:
        return self.path / ("Scripts" if _WINDOWS else "bin")

    @property
    def python(self) -> Path:
        return self.bin_dir / ("python.exe" if _WINDOWS else "python")

    def is_ready(self) -> bool:
        stamp = _read_json(self.path / ENV_STAMP)
        # python's symlink breaks when its base interpreter goes away: rebuild then.
        return bool(stamp and stamp.get("lock_sha256") == self.lock_sha256
                    and self.python.exists())

    def abort(self) -> None:
        """Stop a running ``ensure()`` from any thread; it raises StartAborted."""
        self._abort.set()
        with self._proc_lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            kill_process_tree(proc.pid, grace=1.0)

    def ensure(self, on_progress: Optional[Progress] = None, log=None,
               timeout: float = 3600.0) -> Path:
        """Create the environment unless it is ready; return its folder.

        ``on_progress(message, done, total)`` gets one call per step; ``log``
        (a text file) gets pip's whole output; ``timeout`` bounds each of the
        two steps (venv, pip install).
        """
        progress = on_progress or (lambda *a: None)
        self._timeout = timeout
        if self.is_ready():
            progress("environment ready (reused)", None, None)
            return self.path
        python = self._python or find_python(self.python_version)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._build_lock():
            if self.is_ready():  # built by someone else while we waited
                progress("environment ready (built by another session)", None, None)
                return self.path
            self._remove_leftovers()
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{self.key}-", dir=self.root))
            try:
                self._build(python, tmp, progress, log)
                self._check_abort()
                _write_json(tmp / ENV_STAMP, {"lock_sha256": self.lock_sha256,
                                              "python": python, "created": time.time(),
                                              "model_dir": str(self.model_dir)})
                if self.path.exists():  # stale (no stamp or broken): set aside, then drop
                    trash = self.root / f".trash-{self.key}-{secrets.token_hex(4)}"
                    os.rename(self.path, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                os.rename(tmp, self.path)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        progress("environment ready", None, None)
        return self.path

    def _build(self, python: str, tmp: Path, progress: Progress, log) -> None:
        # The venv is built in `tmp` and renamed: that works because the server
        # runs `bin/python` (a symlink, or a copy on Windows) and pyvenv.cfg names
        # only the base interpreter; script shebangs would keep `tmp`, and none
        # is used.
        progress(f"creating environment (Python {self.python_version})", None, None)
        argv = python.split(" ") if python.startswith("py -") else [python]
        self._run([*argv, "-m", "venv", str(tmp)], log, "creating the environment")
        total = self.packages
        progress(f"installing {total} packages", 0, total)
        done = 0
        tmp_python = tmp / ("Scripts/python.exe" if _WINDOWS else "bin/python")

        def on_line(line: str) -> None:
            nonlocal done
            if line.startswith(("Collecting ", "Processing ")):
                done = min(done + 1, total)
                # "Collecting numpy==2.4.6 (from -r ...)" -> "collecting numpy==2.4.6"
                what = os.path.basename(line.split(" (from ")[0].split(" ", 1)[1])
                progress(f"collecting {what}", done, total)
            elif line.startswith("Installing collected packages"):
                progress(f"installing {total} packages", done, total)

        # --no-deps: the lock lists every distribution the model needs and may
        # leave out declared dependencies it never imports.
        self._run([str(tmp_python), "-m", "pip", "install", "--require-hashes", "--no-deps",
                   "--no-input", "--progress-bar", "off", "--disable-pip-version-check",
                   "-r", str(self.lock_path)], log, "installing the model's packages", on_line)

    def _run(self, argv: list[str], log, what: str,
             on_line: Optional[Callable[[str], None]] = None) -> None:
        self._check_abort()
        lines: list[str] = []
        with self._proc_lock:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, errors="replace",
                                    env=server_env_clean(), cwd=str(self.model_dir),
                                    **_popen_group_kwargs())
            self._proc = proc
        # Reading pip's output blocks: a timer ends a step that hangs (network).
        timed_out = threading.Event()
        timer = threading.Timer(self._timeout, lambda: (timed_out.set(),
                                                        kill_process_tree(proc.pid, grace=1.0)))
        timer.daemon = True
        timer.start()
        try:
            # abort() may have come between the check and the Popen.
            if self._abort.is_set():
                kill_process_tree(proc.pid, grace=1.0)
            for line in proc.stdout:  # ends when pip exits or is killed
                line = line.rstrip()
                lines.append(line)
                if log is not None:
                    log.write(f"[env] {line}\n")
                    log.flush()
                if on_line:
                    on_line(line)
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                kill_process_tree(proc.pid, grace=1.0)
                proc.wait()
            proc.stdout.close()
            with self._proc_lock:
                self._proc = None
        self._check_abort()
        if timed_out.is_set():
            raise RuntimeFailed(f"Timed out {what} for {self.model_dir.name} "
                                f"(over {self._timeout:.0f} s).",
                                hint="Check the network; then start the model again.",
                                details=_tail("\n".join(lines)))
        if proc.returncode != 0:
            raise RuntimeFailed(
                f"Failed {what} for {self.model_dir.name} (exit code {proc.returncode}).",
                hint="Check the network or package index access and the folder's "
                     "requirements.lock; the log has pip's output.",
                details=_tail("\n".join(lines)))

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise StartAborted("Stopped while creating the model's environment.")

    def _build_lock(self):
        """Serialise builds of one environment across processes (POSIX): two
        sessions of one model, or parallel tests, build it once."""
        env = self

        class _Lock:
            def __enter__(self_):
                self_.fh = open(env.root / f".{env.key}.lock", "a+")
                if _WINDOWS:  # the rename keeps Windows safe; it may build twice
                    return self_
                import fcntl
                while True:
                    try:
                        fcntl.flock(self_.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        return self_
                    except BlockingIOError:
                        if env._abort.wait(0.2):
                            self_.fh.close()
                            env._check_abort()

            def __exit__(self_, *exc):
                self_.fh.close()  # closing releases the lock

        return _Lock()

    def _remove_leftovers(self) -> None:
        # Under the build lock every temp folder of this key is a dead build's.
        for p in self.root.glob(f".tmp-{self.key}-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(f".trash-{self.key}-*"):
            shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- sessions

class _Stopped(Exception):
    """stop() was called while start() was running."""


class _PortTaken(Exception):
    """The server could not bind its port: someone took it after we checked."""


def _owner() -> dict:
    return {"tag": OWNER_TAG, "owner_pid": os.getpid(),
            "owner_start_time": process_start_time(os.getpid())}


class ProcessSession(ModelSession):
    """A Cog model folder served by a local ``python -m cog.server.http``.

    ``start()`` (on a worker thread): PREPARING (the environment) -> STARTING
    (server up, model setting up) -> RUNNING (health says READY). ``stop()``
    from any thread, in any state, ends the server's whole process group, or
    abandons the install, and removes the session folder.
    """

    protocol = Protocol.COG
    poll_interval = 0.1  # health polls while starting (s)
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
        self._start_done = threading.Event()
        self._start_done.set()
        self._starter: Optional[int] = None
        self._monitor: Optional[threading.Thread] = None

    # ---- state changes
    def _advance(self, state: SessionState, message: str = "", done=None, total=None) -> None:
        """A progress step of start(): refused once stop() has been asked for,
        so stop's STOPPING/STOPPED is never overwritten by a late STARTING."""
        with self._lock:
            if self._stop_requested.is_set():
                raise _Stopped()
            self.state = state
        if self._on_event:
            self._on_event(SessionEvent(state, message, done, total, time.time()))

    # ---- start
    def start(self, timeout: float = 600.0) -> None:
        """Prepare the environment, start the server and wait until READY.

        ``timeout`` bounds the server start and the model's setup; the install
        is bounded by ``install_timeout``. Raises RuntimeFailed (FAILED,
        nothing held) or StartAborted (stop() was called; STOPPED).
        """
        with self._lock:
            if self.state in (SessionState.PREPARING, SessionState.STARTING,
                              SessionState.RUNNING, SessionState.STOPPING):
                raise RuntimeFailed(f"model {self.name!r} is already {self.state.value}",
                                    hint="Stop it first.")
            self._stop_requested.clear()
            self._start_done.clear()
            self._starter = threading.get_ident()
            self.reason = ""
            self._final_logs = ""
            self.environment._abort.clear()
        try:
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
        except (_Stopped, StartAborted):
            self._release()
            raise StartAborted(f"model {self.name!r} was stopped before it was ready")
        except BaseException as e:
            failure = e if isinstance(e, RuntimeFailed) else RuntimeFailed(
                f"model {self.name!r} could not start: {e}", details=self.logs())
            self._release()
            if self._stop_requested.is_set():
                raise StartAborted(f"model {self.name!r} was stopped before it was ready")
            reason = failure.message
            if failure.details:
                reason += "\n" + failure.details
            self._emit(SessionState.FAILED, reason)
            if failure is e:
                raise
            raise failure from e
        finally:
            self._start_done.set()

    def _make_session_dir(self) -> None:
        sid = f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', self.name)[:40]}-{secrets.token_hex(4)}"
        self.session_dir = self.runtime_dir / sid
        (self.session_dir / "shared").mkdir(parents=True)
        self.shared_dir = str(self.session_dir / "shared")
        _write_json(self.session_dir / "owner.json", {**_owner(), "model_dir": str(self.model_dir)})
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
                stdout=self._log, stderr=subprocess.STDOUT, **_popen_group_kwargs())
            self.pid, self.port = self._proc.pid, port
            self.url = f"http://{HOST}:{port}"

            _write_json(self.session_dir / "server.pid", {
                **_owner(), "pid": self.pid, "start_time": process_start_time(self.pid),
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
        # READY we saw is ours, not from whoever else might hold the port.
        return f"server on {HOST}:{self.port}" in self._read_raw_log()

    def _wait_ready(self, deadline: float) -> None:
        announced = False
        ready_since = None
        while True:
            if self._stop_requested.is_set():
                raise _Stopped()
            rc = self._proc.poll()
            if rc is not None:
                log = self._read_log()
                if "Address already in use" in log.split("[runway] starting")[-1]:
                    raise _PortTaken()
                raise RuntimeFailed(
                    f"The model server for {self.name!r} exited (code {rc}) before it was ready.",
                    hint="See the log for the cause.", details=_tail(log))
            if time.monotonic() > deadline:
                raise RuntimeFailed(f"Model {self.name!r} was not ready in time.",
                                    hint="Its setup may need longer; see the log.",
                                    details=_tail(self._read_log()))
            health = self._health()
            status = (health or {}).get("status")
            if status and not announced:
                announced = True
                self._advance(SessionState.STARTING, "server up; model setting up")
            if status == "READY":
                ready_since = ready_since or time.monotonic()
                if self._bound_by_us() or time.monotonic() - ready_since > 2.0:
                    self.setup_seconds = _setup_seconds(health)
                    return
            elif status == "SETUP_FAILED":
                raise self._setup_failure(health)
            elif status in ("DEFUNCT", "UNHEALTHY"):
                raise RuntimeFailed(f"Model {self.name!r} is {status.lower()} after its setup.",
                                    details=_tail(self._read_log()))
            self._stop_requested.wait(self.poll_interval)

    def _setup_failure(self, health: dict) -> RuntimeFailed:
        """The setup's error as Cog reports it: a traceback where Cog keeps one
        (coglet 0.23.1 keeps only the exception line), then the log's last lines."""
        logs = ((health.get("setup") or {}).get("logs") or "").strip()
        trace = logs[logs.find("Traceback"):] if "Traceback" in logs else _tail(logs)
        last = trace.splitlines()[-1] if trace else "no details"
        # coglet wraps the exception in "worker setup failed (slot ...): ...".
        m = re.search(r"(\w+(?:Error|Exception|Exit|Interrupt)\b.*)$", last)
        return RuntimeFailed(
            f"Model {self.name!r} failed its setup: {m.group(1) if m else last}",
            hint="The model folder or its weights may need fixing; see the details.",
            details=f"{trace}\n\nServer log:\n{_tail(self._read_log())}".strip())

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
    def stop(self) -> None:
        with self._lock:
            self._stop_requested.set()
            busy = not self._start_done.is_set()
            if self.state in (SessionState.STOPPED, SessionState.FAILED) and not busy \
                    and self._proc is None and self.session_dir is None:
                return  # nothing held; a FAILED session keeps its state and reason
            was_running = self.state is SessionState.RUNNING
            self.state = SessionState.STOPPING
        self._emit(SessionState.STOPPING, "stopping")
        self.environment.abort()  # a pip install in progress dies now
        if was_running:
            self._request_shutdown()
        self._release()
        # Let a start() on another thread finish its own clean-up (never wait
        # on ourselves: stop() may be called from an event callback).
        if busy and self._starter != threading.get_ident():
            self._start_done.wait(30.0)
        self._emit(SessionState.STOPPED, "stopped")

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


def _setup_seconds(health: dict) -> Optional[float]:
    """The model's own setup time, from Cog's setup.started_at/completed_at."""
    from datetime import datetime

    setup = health.get("setup") or {}
    try:
        # Cog writes nanoseconds; fromisoformat takes at most microseconds.
        a, b = (datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", setup[k]))
                for k in ("started_at", "completed_at"))
    except (KeyError, TypeError, ValueError):
        return None
    return (b - a).total_seconds()


# --------------------------------------------------------------------------- orphans

def _alive_as_recorded(pid, start_time, cmdline=None) -> bool:
    """Whether ``pid`` is still the process that was recorded (not a reused pid)."""
    if not isinstance(pid, int) or pid <= 0 or not start_time:
        return False
    if process_start_time(pid) != start_time:
        return False
    if cmdline is not None:
        now = process_cmdline(pid)
        if now is not None and now != cmdline:
            return False
    return True


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
        owner = _read_json(d / "owner.json")
        server = _read_json(d / "server.pid")
        who = server or owner
        if who is None:
            # A folder being created right now has no owner.json for a moment.
            if time.time() - d.stat().st_mtime > 60:
                shutil.rmtree(d, ignore_errors=True)
            continue
        if who.get("tag") != OWNER_TAG:
            continue  # not ours: leave it
        if _alive_as_recorded(who.get("owner_pid"), who.get("owner_start_time")):
            continue  # its Blender still runs (maybe another instance): its session
        if server and _alive_as_recorded(server.get("pid"), server.get("start_time"),
                                         server.get("cmdline")):
            if kill_process_tree(server["pid"]):
                stopped.append(f"stopped model server pid {server['pid']} on port "
                               f"{server.get('port')} ({server.get('model_dir')})")
            else:
                continue  # keep the pid file: try again next time
        shutil.rmtree(d, ignore_errors=True)
    return stopped
