"""A model's own Python environment, made from its ``requirements.lock``.

Layout on disk::

    ENV_ROOT/py3.11-<lock hash>/                   one environment per (Python, lock), reused
    ENV_ROOT/py3.11-<lock hash>/.runway-env.json   stamp: written last, so a killed
                                                   install never looks complete
    ENV_ROOT/.py3.11-<lock hash>.lock              held while one process builds it
    ENV_ROOT/.tmp-py3.11-<lock hash>-*/            a build in progress (or a killed one's)
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Union

from .base import RuntimeFailed, StartAborted
from .cog_yaml import load_cog_yaml
from .interpreters import clean_env, find_python
from .processes import (kill_process_tree, output_tail, popen_group_kwargs, read_json,
                        write_json)

ENV_STAMP = ".runway-env.json"
LOCK_FILE = "requirements.lock"
_WINDOWS = os.name == "nt"

PathLike = Union[str, os.PathLike]
Progress = Callable[[str, Optional[int], Optional[int]], None]


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
        self.python_version = load_cog_yaml(self.model_dir).python_version
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
        stamp = read_json(self.path / ENV_STAMP)
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
                write_json(tmp / ENV_STAMP, {"lock_sha256": self.lock_sha256,
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
                                    env=clean_env(), cwd=str(self.model_dir),
                                    **popen_group_kwargs())
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
                                details=output_tail("\n".join(lines)))
        if proc.returncode != 0:
            raise RuntimeFailed(
                f"Failed {what} for {self.model_dir.name} (exit code {proc.returncode}).",
                hint="Check the network or package index access and the folder's "
                     "requirements.lock; the log has pip's output.",
                details=output_tail("\n".join(lines)))

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
