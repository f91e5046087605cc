"""The local process runtime against the real Cog server (cog 0.23.1).

The model folders are tests/model_servers/process/* (``build.py models lock/schema`` write their
locks and schemas). Their environment is built once into the shared cache
``.cache/model-envs`` and reused; the tests that must watch an install build
into a temporary folder. At most one model server runs at a time.
Linux only: process groups, /proc.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from runway_addon.core.runtimes import process
from runway_addon.core.runtimes.base import RuntimeFailed, SessionState, StartAborted
from runway_addon.core.runtimes.process import (
    ModelEnvironment, ProcessSession, cleanup_orphans, process_start_time)
from tests.helpers import ROOT, SHARED_ENVS, gone, owner_that_crashes, port_refused, zombie

pytestmark = [pytest.mark.network, pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]

MODELS = ROOT / "tests" / "model_servers" / "process"
ECHO = MODELS / "echo"
BROKEN = MODELS / "broken_setup"


# ---------------------------------------------------------------- helpers

class Recorder:
    """Collects session events (from the worker thread) for assertions."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def states(self):
        out = []
        for e in self.events:
            if not out or out[-1] is not e.state:
                out.append(e.state)
        return out

    def wait_for(self, pred, timeout=60.0):
        with self.cond:
            assert self.cond.wait_for(lambda: any(pred(e) for e in self.events), timeout), \
                [(e.state.value, e.message) for e in self.events]


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if text.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return [p for p in found if not zombie(p)]


def start_in_thread(session, **kw):
    """start() on a worker thread, as the UI does; returns (thread, box with the outcome)."""
    box = {}

    def run():
        try:
            session.start(**kw)
            box["ok"] = True
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


@pytest.fixture(scope="module")
def env_root() -> Path:
    """The shared environment cache, with the test models' environment built."""
    ModelEnvironment(ECHO, SHARED_ENVS).ensure()
    return SHARED_ENVS


@pytest.fixture
def runtime_dir(tmp_path) -> Path:
    return tmp_path / "runtime"


@pytest.fixture
def sessions(env_root, runtime_dir):
    """Make sessions that are always stopped at the end of the test."""
    made = []

    def make(model=ECHO, **kw):
        kw.setdefault("env_root", env_root)
        kw.setdefault("runtime_dir", runtime_dir)
        s = ProcessSession(model, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


# ---------------------------------------------------------------- environments

def test_environment_built_with_progress_then_reused(tmp_path):
    root = tmp_path / "envs"
    env = ModelEnvironment(ECHO, root)
    steps = []
    path = env.ensure(lambda msg, done, total: steps.append((msg, done, total)))
    assert env.is_ready() and path == root / env.key
    assert (path / process.ENV_STAMP).is_file()
    messages = [m for m, _, _ in steps]
    assert messages[0].startswith("creating environment (Python 3.11)")
    assert f"installing {env.packages} packages" in messages
    collected = [(d, t) for m, d, t in steps if m.startswith("collecting ")]
    assert len(collected) == env.packages and collected[-1] == (env.packages, env.packages)
    assert any("cog==0.23.1" in m for m in messages)
    assert not list(root.glob(".tmp-*"))  # the temporary build folder was renamed
    out = subprocess.run([str(env.python), "-c", "import cog, sys; print(cog.__version__)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.23.1"

    # A second environment object for the same lock only reads the stamp.
    again = ModelEnvironment(BROKEN, root)  # same lock content -> same environment
    assert again.path == path
    steps.clear()
    again.ensure(lambda msg, done, total: steps.append(msg))
    assert steps == ["environment ready (reused)"]  # no venv, no pip: the stamp only


def test_missing_python_version_is_a_clear_error(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.99"\npredict: "predict.py:P"\n')
    (model / "requirements.lock").write_text((ECHO / "requirements.lock").read_text())
    with pytest.raises(RuntimeFailed) as err:
        ModelEnvironment(model, tmp_path / "envs").ensure()
    assert "Python 3.99" in err.value.message
    assert "install" in err.value.hint.lower() and "python3.99" in err.value.hint
    assert not (tmp_path / "envs").exists() or not any((tmp_path / "envs").iterdir())


def test_stop_during_preparing_leaves_no_environment_and_no_process(tmp_path, runtime_dir):
    root = tmp_path / "envs"
    rec = Recorder()
    s = ProcessSession(ECHO, env_root=root, runtime_dir=runtime_dir, on_event=rec)
    thread, box = start_in_thread(s)
    # Stop in the middle of pip's install, from another thread (the UI's main thread).
    rec.wait_for(lambda e: e.message.startswith("collecting "), timeout=120)
    s.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), StartAborted)
    assert s.state is SessionState.STOPPED
    assert rec.states()[-2:] == [SessionState.STOPPING, SessionState.STOPPED]
    assert not s.environment.is_ready()
    assert not (root / s.environment.key).exists()
    assert not list(root.glob(".tmp-*"))  # the half-built environment is gone
    assert processes_mentioning(str(root)) == []  # pip is gone too
    assert not any(runtime_dir.iterdir())


# ---------------------------------------------------------------- sessions

def test_start_predict_stop(sessions, runtime_dir):
    rec = Recorder()
    s = sessions(on_event=rec)
    assert s.state is SessionState.STOPPED
    s.start(timeout=120)
    assert rec.states() == [SessionState.PREPARING, SessionState.STARTING, SessionState.RUNNING]
    assert any(e.message == "server up; model setting up" for e in rec.events)
    assert s.state is SessionState.RUNNING and s.url == f"http://127.0.0.1:{s.port}"

    # The pid file says what cleanup_orphans needs to recognise the server.
    pidfile = json.loads((s.session_dir / "server.pid").read_text())
    assert pidfile["pid"] == s.pid and pidfile["port"] == s.port
    assert pidfile["start_time"] == process_start_time(s.pid)
    assert pidfile["model_dir"] == str(ECHO) and pidfile["tag"] == process.OWNER_TAG
    assert pidfile["owner_pid"] == os.getpid()
    assert Path(s.shared_dir).is_dir()

    # A real prediction through the session's client.
    with s.client() as client:
        assert client.run({"text": "ab", "repeat": 3}).outputs == {"output": "ababab"}
    assert "Server ready" in s.logs()

    pid, port, session_dir = s.pid, s.port, s.session_dir
    s.stop()
    assert s.state is SessionState.STOPPED
    assert rec.states()[-2:] == [SessionState.STOPPING, SessionState.STOPPED]
    assert port_refused(port)
    assert gone(pid)  # the server and its worker: the whole group
    assert not session_dir.exists()  # pid file, shared folder and all
    assert "Server ready" in s.logs()  # still readable after stop
    s.stop()  # idempotent
    assert s.state is SessionState.STOPPED


def test_environment_is_reused_on_the_next_start(sessions):
    for _ in range(2):
        rec = Recorder()
        s = sessions(on_event=rec)
        s.start(timeout=120)
        first = rec.events[0].time
        starting = next(e.time for e in rec.events if e.state is SessionState.STARTING)
        assert starting - first < 1.0, "preparing a built environment should be a stamp read"
        assert any("reused" in e.message for e in rec.events)
        s.stop()


def test_setup_failure_fails_with_the_traceback(sessions):
    rec = Recorder()
    s = sessions(BROKEN, on_event=rec)
    with pytest.raises(RuntimeFailed) as err:
        s.start(timeout=120)
    assert not isinstance(err.value, StartAborted)
    assert s.state is SessionState.FAILED and rec.states()[-1] is SessionState.FAILED
    assert "weights file missing: /nowhere/model.bin" in err.value.message
    # coglet 0.23.1 reports the exception line, not the whole traceback.
    assert err.value.message.endswith(
        "failed its setup: RuntimeError: weights file missing: /nowhere/model.bin")
    assert "RuntimeError: weights file missing: /nowhere/model.bin" in s.reason
    assert "Worker initialization failed" in s.reason  # the log's last lines follow
    assert s.pid and gone(s.pid) and port_refused(s.port)
    assert s.session_dir is None


def test_server_exiting_during_setup_fails(sessions):
    rec = Recorder()
    s = sessions(on_event=rec, env={"RUNWAY_TEST_SETUP_SECONDS": "60"})
    thread, box = start_in_thread(s, timeout=120)
    rec.wait_for(lambda e: e.message == "server up; model setting up")
    assert process._wait_until(lambda: "setting up for 60" in s.logs(), 30, step=0.1)
    os.kill(s.pid, signal.SIGKILL)  # the server leader only: its worker is still there
    thread.join(30)
    err = box.get("error")
    assert isinstance(err, RuntimeFailed) and not isinstance(err, StartAborted)
    assert "exited" in err.message and s.state is SessionState.FAILED
    assert "setting up for 60" in s.reason  # the last log lines
    assert gone(s.pid)


def test_server_dying_while_running_fails(sessions):
    rec = Recorder()
    s = sessions(on_event=rec)
    s.start(timeout=120)
    pid = s.pid
    os.kill(pid, signal.SIGKILL)
    rec.wait_for(lambda e: e.state is SessionState.FAILED, timeout=15)
    assert s.state is SessionState.FAILED and "exited" in s.reason
    assert gone(pid)
    with pytest.raises(RuntimeFailed):
        s.client()
    s.stop()
    assert s.state is SessionState.FAILED  # nothing was held: stop keeps the reason


def test_worker_dying_while_running_fails(sessions):
    """coglet keeps serving when its worker dies, but says UNHEALTHY for good."""
    rec = Recorder()
    s = sessions(on_event=rec)
    s.watch_interval = 0.5
    s.start(timeout=120)
    pid, port = s.pid, s.port
    r = requests.post(f"{s.url}/predictions", json={"input": {"text": "crash the worker"}},
                      timeout=30)
    assert r.json()["status"] == "failed"
    rec.wait_for(lambda e: e.state is SessionState.FAILED, timeout=15)
    assert "stopped working" in s.reason and "UNHEALTHY" in s.reason
    assert gone(pid) and port_refused(port)


def test_timeout_fails_and_frees_the_server(sessions):
    s = sessions(env={"RUNWAY_TEST_SETUP_SECONDS": "60"})
    with pytest.raises(RuntimeFailed) as err:
        s.start(timeout=3)
    assert "not ready in time" in err.value.message and s.state is SessionState.FAILED
    assert gone(s.pid) and port_refused(s.port)


def test_stop_during_starting_from_another_thread(sessions):
    rec = Recorder()
    s = sessions(on_event=rec, env={"RUNWAY_TEST_SETUP_SECONDS": "60"})
    thread, box = start_in_thread(s, timeout=120)
    rec.wait_for(lambda e: e.message == "server up; model setting up")
    pid, port = s.pid, s.port
    s.stop()
    thread.join(90)  # a start that was not aborted would succeed after its 60 s setup
    assert isinstance(box.get("error"), StartAborted)
    assert s.state is SessionState.STOPPED and SessionState.FAILED not in rec.states()
    assert gone(pid) and port_refused(port)


def test_stop_from_an_event_callback_does_not_deadlock(sessions):
    """A UI may call stop() from inside on_event, on start()'s own thread."""
    box = {}

    def on_event(e):
        if e.state is SessionState.STARTING and "box" not in box:
            box["box"] = True
            s.stop()

    s = sessions(on_event=on_event)
    thread, outcome = start_in_thread(s, timeout=60)
    thread.join(60)  # a deadlock would hold it for ever
    assert not thread.is_alive() and isinstance(outcome.get("error"), StartAborted), outcome
    assert s.state is SessionState.STOPPED and s.pid is None and s.session_dir is None


def test_port_taken_by_someone_else(sessions, monkeypatch):
    with socket.socket() as occupier:
        occupier.bind(("127.0.0.1", 0))
        occupier.listen()
        taken = occupier.getsockname()[1]
        # Without a server: the pre-check skips the taken port.
        offered = []

        def candidates():  # the taken port first, once; then whatever is free
            if not offered:
                offered.append(taken)
                yield taken
            while True:
                yield process.free_port()

        monkeypatch.setattr(ProcessSession, "_candidate_ports", staticmethod(candidates))
        assert sessions()._pick_port() != taken

        # The race: the port is free when checked, taken when the server binds.
        offered.clear()
        monkeypatch.setattr(process, "_port_is_free", lambda port: True)
        rec = Recorder()
        s = sessions(on_event=rec)
        s.start(timeout=120)
        assert s.state is SessionState.RUNNING and s.port != taken
        assert any(f"port {taken} was taken" in e.message for e in rec.events)
        with s.client() as client:
            assert client.run({"text": "ok"}).outputs == {"output": "ok"}
        assert occupier.getsockname()[1] == taken  # the other owner is untouched
        s.stop()


# ---------------------------------------------------------------- orphans

def test_a_server_stops_itself_when_its_owner_is_killed(env_root, runtime_dir):
    """A farm kills Blender alone (SIGKILL, no process group): its model server
    notices within seconds and stops, without waiting for a clean-up."""
    owner, info = owner_that_crashes(ECHO, env_root, runtime_dir, watch=True)
    pid, port = info["pid"], info["port"]
    try:
        assert requests.get(f"http://127.0.0.1:{port}/health-check", timeout=5).ok
    finally:
        owner.kill()
        owner.wait()
    assert process._wait_until(lambda: gone(pid), 15), "the server outlived its owner"
    assert port_refused(port)
    # Nothing of the group is left (the watcher ends with it).
    assert not process._group_alive(pid)


def test_a_stopped_session_leaves_no_watcher(env_root, runtime_dir):
    s = ProcessSession(ECHO, env_root=env_root, runtime_dir=runtime_dir)
    s.start(timeout=120)
    pid = s.pid
    s.stop()
    assert process._wait_until(lambda: not process._group_alive(pid), 10)


def test_cleanup_orphans_after_a_crash(env_root, runtime_dir):
    owner, info = owner_that_crashes(ECHO, env_root, runtime_dir)
    owner.kill()
    owner.wait()
    pid, port = info["pid"], info["port"]
    assert not gone(pid), "the server outlives its crashed owner"
    assert requests.get(f"http://127.0.0.1:{port}/health-check", timeout=5).ok

    stopped = cleanup_orphans(runtime_dir)
    assert len(stopped) == 1 and f"pid {pid}" in stopped[0]
    assert process._wait_until(lambda: gone(pid), 10)
    assert port_refused(port)
    assert list(runtime_dir.iterdir()) == []
    assert cleanup_orphans(runtime_dir) == []


def test_cleanup_orphans_never_kills_a_foreign_process(tmp_path):
    runtime_dir = tmp_path / "runtime"
    foreign = subprocess.Popen(["sleep", "60"], start_new_session=True)
    dead_owner = {"tag": process.OWNER_TAG, "owner_pid": 2 ** 22 + 7,
                  "owner_start_time": "x:1"}
    server_cmd = process.server_command("/somewhere/bin/python")
    cases = {
        # The pid was reused: same number, another start time.
        "recycled": {"pid": foreign.pid, "start_time": "boot:12345", "cmdline": server_cmd},
        # Same pid and start time, but not our command line.
        "other-command": {"pid": foreign.pid, "start_time": process_start_time(foreign.pid),
                          "cmdline": server_cmd},
    }
    try:
        for name, server in cases.items():
            d = runtime_dir / name
            d.mkdir(parents=True)
            (d / "owner.json").write_text(json.dumps(dead_owner))
            (d / "server.pid").write_text(json.dumps({**dead_owner, **server, "port": 1}))
        # A session whose owner is alive (another Blender) is left entirely alone,
        # even when everything else matches.
        live = runtime_dir / "live-owner"
        live.mkdir()
        live_pid = {**process._owner(), "pid": foreign.pid, "port": 1,
                    "start_time": process_start_time(foreign.pid),
                    "cmdline": process.process_cmdline(foreign.pid)}
        (live / "server.pid").write_text(json.dumps(live_pid))
        # Not our tag: not ours to touch.
        other = runtime_dir / "not-ours"
        other.mkdir()
        (other / "server.pid").write_text(json.dumps({**live_pid, "tag": "someone-else",
                                                       "owner_pid": 2 ** 22 + 7}))

        assert cleanup_orphans(runtime_dir) == []
        assert foreign.poll() is None, "a foreign process was signalled"
        assert sorted(p.name for p in runtime_dir.iterdir()) == ["live-owner", "not-ours"]
    finally:
        foreign.kill()
        foreign.wait()
