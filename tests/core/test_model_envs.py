"""Every user's first run: creating a model's environment with real pip, when it
goes wrong. pip fails (a requirement nothing provides), hangs past the timeout,
or is killed halfway; an environment left stale or broken; two builds of one
environment at once.

The model folders are made here, with a one-package lock: a tiny wheel built by
the test, served from a local folder or from a local HTTP server that can hold
pip's request (so pip is caught in the middle of its install, by a condition,
not a sleep). Nothing leaves this computer. Linux only (process groups, /proc).
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import pytest

from runway_addon.core.errors import RunwayError
from runway_addon.core.runtimes.base import RuntimeFailed
from runway_addon.core.runtimes.model_envs import ENV_STAMP, ModelEnvironment
from runway_addon.core.runtimes.processes import process_cmdline
from tests.helpers import in_threads, python_env, wait_until

pytestmark = [pytest.mark.network, pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]

PKG, VERSION = "rwtinypkg", "1.0"
WHEEL = f"{PKG}-{VERSION}-py3-none-any.whl"


# ---------------------------------------------------------------- a wheel, an index, a folder

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A real (tiny, pure-Python) wheel: ``import rwtinypkg`` gives VALUE = 42."""
    folder = tmp_path_factory.mktemp("wheels")
    info = f"{PKG}-{VERSION}.dist-info"
    files = {
        f"{PKG}/__init__.py": b"VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PKG}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    with zipfile.ZipFile(folder / WHEEL, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return folder / WHEEL


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_folder(base: Path, lock: str, name: str = "tiny") -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "cog.yaml").write_text('build:\n  python_version: "3.11"\n'
                                     'predict: "predict.py:Predictor"\n')
    (folder / "requirements.lock").write_text(lock)
    return folder


def local_lock(wheel: Path) -> str:
    return (f"--no-index\n--find-links {wheel.parent}\n"
            f"{PKG}=={VERSION} --hash=sha256:{_sha256(wheel)}\n")


class Index:
    """A find-links page and the wheel over HTTP; while ``hold`` is set, a request
    is answered only once it is cleared (``asked`` says pip is waiting on it)."""

    def __init__(self, wheel: Path):
        self.hold = threading.Event()
        self.asked = threading.Event()
        page = f'<html><body><a href="{WHEEL}">{WHEEL}</a></body></html>'.encode()
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                index.asked.set()
                while index.hold.is_set() and not index.closing.is_set():
                    index.closing.wait(0.05)
                if index.closing.is_set():
                    return
                body = wheel.read_bytes() if self.path.endswith(".whl") else page
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream"
                                 if self.path.endswith(".whl") else "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.closing = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lock(self, wheel: Path) -> str:
        return (f"--no-index\n--find-links {self.url}\n"
                f"{PKG}=={VERSION} --hash=sha256:{_sha256(wheel)}\n")

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def index(wheel):
    idx = Index(wheel)
    yield idx
    idx.close()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob(".tmp-*")) + sorted(p.name for p in root.glob(".trash-*"))


def imports_the_package(env: ModelEnvironment) -> bool:
    out = subprocess.run([str(env.python), "-c", f"import {PKG}; print({PKG}.VALUE)"],
                         capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "42"


def pip_of(lock: Path) -> list[int]:
    """The pip processes installing from ``lock``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            argv = process_cmdline(int(entry.name)) or []
            if "pip" in argv and str(lock) in argv:
                found.append(int(entry.name))
    return found


# ---------------------------------------------------------------- the tests

def test_pip_failing_is_a_clear_error_and_leaves_nothing(tmp_path, wheel):
    folder = model_folder(tmp_path, f"--no-index\n--find-links {wheel.parent}\n"
                                    f"rwnosuchpkg==1.0 --hash=sha256:{'0' * 64}\n")
    env = ModelEnvironment(folder, tmp_path / "envs")
    with pytest.raises(RuntimeFailed) as err:
        env.ensure()
    assert isinstance(err.value, RunwayError)
    e = err.value
    assert "installing the model's packages" in e.message and "tiny" in e.message
    assert "requirements.lock" in e.hint  # what to do: check the lock (and the index)
    assert "rwnosuchpkg" in e.details  # pip's own words about what it could not find
    assert not env.path.exists() and not env.is_ready()
    assert leftovers(env.root) == []


def test_pip_hanging_past_the_timeout_is_ended(tmp_path, wheel, index, monkeypatch):
    # pip's own read timeout and retries would otherwise end it first.
    monkeypatch.setenv("PIP_TIMEOUT", "3600")
    monkeypatch.setenv("PIP_RETRIES", "0")
    index.hold.set()
    folder = model_folder(tmp_path, index.lock(wheel))
    env = ModelEnvironment(folder, tmp_path / "envs")
    with pytest.raises(RuntimeFailed) as err:
        env.ensure(timeout=45)
    e = err.value
    assert index.asked.is_set()  # it was pip's install that hung, not the venv
    assert e.message.startswith("Timed out installing the model's packages for tiny")
    assert "over 45 s" in e.message and "network" in e.hint
    assert pip_of(env.lock_path) == []  # the hung pip is gone
    assert not env.path.exists() and leftovers(env.root) == []


BUILDER = textwrap.dedent("""
    import sys
    from runway_addon.core.runtimes.model_envs import ModelEnvironment
    ModelEnvironment(sys.argv[1], sys.argv[2]).ensure()
""")


def test_a_build_killed_halfway_is_not_used_next_time(tmp_path, wheel, index):
    """Blender killed while pip installs: its half-built folder stays behind; the
    next start builds the environment again and uses only that."""
    index.hold.set()
    folder = model_folder(tmp_path, index.lock(wheel))
    root = tmp_path / "envs"
    builder = subprocess.Popen([sys.executable, "-c", BUILDER, str(folder), str(root)],
                               env=python_env())
    env = ModelEnvironment(folder, root)
    try:
        assert wait_until(index.asked.is_set, timeout=120), "pip never asked the index"
        pips = pip_of(env.lock_path)
        assert pips
        builder.kill()  # no clean-up of its own, as when Blender is killed
        builder.wait()
        for pid in pips:
            os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not pip_of(env.lock_path), timeout=30)
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait()
    half = leftovers(root)
    assert half and not env.path.exists() and not env.is_ready()
    index.hold.clear()
    events = []
    assert env.ensure(on_progress=lambda msg, d, t: events.append(msg)) == env.path
    assert "environment ready (reused)" not in events
    assert env.is_ready() and imports_the_package(env)
    assert leftovers(root) == []  # the dead build's folder went with the new build


@pytest.mark.parametrize("damage", ["python missing", "python dangling", "stamp broken",
                                    "stamp of another lock"])
def test_a_stale_or_broken_environment_is_rebuilt(tmp_path, wheel, damage):
    folder = model_folder(tmp_path, local_lock(wheel))
    env = ModelEnvironment(folder, tmp_path / "envs")
    env.ensure()
    assert env.is_ready()
    stamp = env.path / ENV_STAMP
    if damage == "python missing":
        env.python.unlink()
    elif damage == "python dangling":  # its base interpreter was uninstalled
        env.python.unlink()
        env.python.symlink_to(tmp_path / "gone" / "python3.11")
    elif damage == "stamp broken":
        stamp.write_text("{not json")
    else:
        stamp.write_text(json.dumps({**json.loads(stamp.read_text()), "lock_sha256": "0" * 64}))
    assert not env.is_ready()
    events = []
    env.ensure(on_progress=lambda msg, d, t: events.append(msg))
    assert "environment ready (reused)" not in events and events[-1] == "environment ready"
    assert env.is_ready() and imports_the_package(env)
    assert json.loads(stamp.read_text())["lock_sha256"] == env.lock_sha256
    assert leftovers(env.root) == []


def test_two_builds_at_once_make_one_good_environment(tmp_path, wheel):
    """Two sessions of one model (threads here; the lock is a file lock, so two
    Blenders behave the same): one builds, the other waits and reuses it."""
    folder = model_folder(tmp_path, local_lock(wheel))
    root = tmp_path / "envs"
    envs = [ModelEnvironment(folder, root), ModelEnvironment(folder, root)]
    events: list[list[str]] = [[], []]
    errors = []

    def build(i):
        try:
            envs[i].ensure(on_progress=lambda msg, d, t: events[i].append(msg))
        except BaseException as e:  # reported below
            errors.append(e)

    in_threads(build, 2)
    assert errors == []
    built = [e for e in events if any(m.startswith("installing") for m in e)]
    assert len(built) == 1  # pip ran once
    other = events[1 - events.index(built[0])]
    assert other[-1] in ("environment ready (built by another session)",
                         "environment ready (reused)")
    assert envs[0].is_ready() and imports_the_package(envs[0])
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == [envs[0].key]
    assert leftovers(root) == []


def test_two_processes_building_at_once_make_one_good_environment(tmp_path, wheel):
    folder = model_folder(tmp_path, local_lock(wheel))
    root = tmp_path / "envs"
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(folder), str(root)],
                              env=python_env())
             for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    env = ModelEnvironment(folder, root)
    assert env.is_ready() and imports_the_package(env)
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == [env.key]
    assert leftovers(root) == []
