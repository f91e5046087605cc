"""DockerSession against the real Docker engine, with images built offline by
buildtools.images from the predictors in tests/model_servers/docker (built once, then
reused while their content hash matches).

Needs a running engine (CI starts dockerd) and root (debootstrap, chroot) the
first time the images are built. The remote-engine test starts a second dockerd
on tcp://127.0.0.1:23750 with its own data root, exec root and bridge.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from runway_addon.core.errors import RunwayError
from runway_addon.core.runtimes import docker as rt
from runway_addon.core.runtimes.base import RuntimeFailed, SessionState, StartAborted
from runway_addon.core.runtimes.docker import DockerSession
from tests.helpers import DOCKER_TEST_IMAGES, ROOT, python_env, stop_process, wait_until

pytestmark = pytest.mark.docker

INVERT = DOCKER_TEST_IMAGES["invert"]
MEMHOG = DOCKER_TEST_IMAGES["memhog"]
REMOTE_HOST = "tcp://127.0.0.1:23750"


# ---------------------------------------------------------------- fixtures



@pytest.fixture(scope="session")
def engine(docker_client):
    return docker_client


@pytest.fixture(scope="session")
def images(docker_images):
    """The two test images (tests/conftest.py builds them once per session)."""
    return docker_images


@pytest.fixture
def owner():
    """A fresh owner id per test, so orphan cleanup never meets other tests' containers."""
    return "test-" + uuid.uuid4().hex[:12]


@pytest.fixture
def sessions(engine, owner):
    """Sessions made by a test; all stopped, and their containers checked gone, after."""
    made = []

    def make(name="invert", image=INVERT, **kw):
        kw.setdefault("owner", owner)
        s = DockerSession(name, image, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
    for c in engine.containers.list(all=True, filters={"label": f"{rt.OWNER_LABEL}={owner}"}):
        c.remove(force=True)
        pytest.fail(f"container {c.name} outlived its session")


def _pattern(h=6, w=7) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def _decode_output(output: str) -> np.ndarray:
    assert output.startswith("data:image/png;base64,"), output[:60]
    data = base64.b64decode(output.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # SO_REUSEADDR: our own closed connections may leave TIME_WAIT entries;
        # a listener still holding the port makes the bind fail all the same.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------- pure: the request we build

def test_container_config_is_hardened_and_labelled():
    cfg = rt.container_config("img:1", model="invert", owner="me", session_id="abc123",
                              mem_limit=512 << 20, shared_dir="/tmp/share-x", env={"A": "1"},
                              user="1000:1000")
    assert cfg["ports"] == {"5000/tcp": ("127.0.0.1", None)}  # loopback, Docker picks the port
    assert cfg["privileged"] is False
    assert cfg["network_mode"] == "bridge"
    assert cfg["cap_drop"] == ["ALL"]
    assert "no-new-privileges" in cfg["security_opt"]
    assert cfg["mem_limit"] == cfg["memswap_limit"] == 512 << 20  # no swap: OOM is real
    assert cfg["volumes"] == {"/tmp/share-x": {"bind": "/tmp/share-x", "mode": "rw"}}
    assert cfg["labels"][rt.OWNER_LABEL] == "me"
    assert cfg["labels"][rt.SESSION_LABEL] == "abc123"
    assert cfg["labels"][rt.MODEL_LABEL] == "invert"
    assert cfg["labels"][rt.PID_LABEL] == str(os.getpid())
    assert cfg["environment"] == {"A": "1"} and cfg["user"] == "1000:1000"
    assert "device_requests" not in cfg and "mem_swappiness" not in cfg
    bare = rt.container_config("img:1", model="m", owner="me", session_id="s")
    assert "mem_limit" not in bare and "volumes" not in bare


def test_container_config_gpu_device_request():
    cfg = rt.container_config("img:1", model="m", owner="o", session_id="s", gpu=True)
    (req,) = cfg["device_requests"]
    assert req["Count"] == -1 and req["Capabilities"] == [["gpu"]]
    assert not req.get("DeviceIDs")
    cfg = rt.container_config("img:1", model="m", owner="o", session_id="s", gpu=True,
                              gpu_ids=[0, "2"])
    (req,) = cfg["device_requests"]
    assert req["DeviceIDs"] == ["0", "2"] and req["Capabilities"] == [["gpu"]]
    assert not req.get("Count")
    assert cfg["privileged"] is False  # GPUs come through the device request, never privilege


# ---------------------------------------------------------------- engine checks, no image needed

def test_gpu_without_nvidia_runtime_fails_clearly(engine, sessions):
    assert "nvidia" not in (engine.info().get("Runtimes") or {})  # this machine has none
    with pytest.raises(RuntimeFailed) as err:
        rt.check_gpu_support(engine)
    assert "NVIDIA runtime" in err.value.message and "runc" in err.value.message
    assert "NVIDIA Container Toolkit" in err.value.hint
    s = sessions(gpu=True)
    with pytest.raises(RuntimeFailed, match="NVIDIA"):
        s.start(timeout=30)
    assert s.state is SessionState.FAILED and "NVIDIA" in s.reason


@pytest.mark.parametrize("host", ["unix:///tmp/runway-no-such-docker.sock",
                                  "tcp://127.0.0.1:1"])
def test_docker_unreachable_says_docker_unavailable(host, sessions):
    s = sessions(docker_host=host)
    with pytest.raises(RuntimeFailed) as err:  # not a start that timed out: refused at once
        s.start(timeout=30)
    assert err.value.message.startswith("Docker unavailable")
    assert "Docker service" in err.value.hint  # Linux wording on this machine
    assert s.state is SessionState.FAILED and s.reason.startswith("Docker unavailable")
    s.stop()  # harmless on a session that holds nothing
    assert s.state is SessionState.FAILED


def test_an_engine_that_never_answers_ends_the_start_at_its_timeout(sessions):
    # A port that takes connections and never answers (a hung engine, a wrong service).
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        s = sessions(docker_host=f"tcp://127.0.0.1:{hung.getsockname()[1]}")
        t0 = time.monotonic()
        with pytest.raises(RuntimeFailed) as err:
            s.start(timeout=2)
        took = time.monotonic() - t0  # the promise: start() honours its timeout
    assert took < 2 + 10, took  # the engine's own 60 s client timeout held it before
    assert err.value.message.startswith("Docker unavailable")
    assert s.state is SessionState.FAILED


def test_missing_image_that_cannot_be_pulled(engine, sessions):
    name = f"runway-test/not-built-{uuid.uuid4().hex[:8]}:latest"
    s = sessions("ghost", name)
    with pytest.raises(RuntimeFailed) as err:
        s.start(timeout=120)
    assert f"The Docker image {name} is not on this machine and could not be pulled" \
        in err.value.message
    assert "python3 build.py models docker" in err.value.hint and err.value.kind == "image-missing"
    assert s.state is SessionState.FAILED
    s2 = sessions("ghost", name, pull=False)  # no registry asked at all
    with pytest.raises(RuntimeFailed, match="is not on this machine"):
        s2.start(timeout=30)


def test_stop_while_preparing(engine, sessions, owner):
    """stop() from another thread while the image is being fetched ends start() at once."""
    events = []

    def on_event(ev):
        events.append(ev)
        if ev.state is SessionState.PREPARING and ev.message.startswith("pulling"):
            threading.Thread(target=s.stop).start()

    s = sessions("ghost", f"runway-test/not-built-{uuid.uuid4().hex[:8]}:latest",
                 on_event=on_event)
    with pytest.raises(StartAborted, match="stopped before it was ready"):
        s.start(timeout=120)
    assert wait_until(lambda: s.state is SessionState.STOPPED, 5)
    assert s.url is None and s.shared_dir is None
    assert not engine.containers.list(all=True,
                                      filters={"label": f"{rt.OWNER_LABEL}={owner}"})


# ---------------------------------------------------------------- real runs

@pytest.mark.slow  # may build the test images first
def test_run_returns_inverted_pixels_and_is_locked_down(engine, images, sessions):
    assert images["invert"]["size"] < 250e6
    events = []
    s = sessions(mem_limit=512 << 20, on_event=events.append)
    s.start(timeout=120)
    assert s.state is SessionState.RUNNING
    assert list(dict.fromkeys(e.state for e in events)) == [
        SessionState.PREPARING, SessionState.STARTING, SessionState.RUNNING]
    assert any(e.message == "server up; model setting up" for e in events)
    assert s.url == f"http://127.0.0.1:{s.host_port}"
    img = _pattern()

    # 1. Through the add-on's Cog client: the input goes through the shared folder.
    with s.client() as model:
        result = model.run({"image": img})
        data = result.outputs["output"].read_bytes()  # a FileValue (Path output)
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(out, 255 - img)

    # 2. Plain HTTP with a bare path in the shared folder: same path on both sides.
    src = Path(s.shared_dir) / "in.png"
    src.write_bytes(_png(img))
    r = requests.post(s.url + "/predictions", json={"input": {"image": str(src)}}, timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    np.testing.assert_array_equal(_decode_output(r.json()["output"]), 255 - img)

    # What the engine really did.
    c = engine.containers.get(s.container_id)
    host = c.attrs["HostConfig"]
    assert host["PortBindings"] == {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    published = c.attrs["NetworkSettings"]["Ports"]["5000/tcp"]
    assert published and all(b["HostIp"] == "127.0.0.1" for b in published)
    assert int(published[0]["HostPort"]) == s.host_port
    assert host["Privileged"] is False and host["NetworkMode"] == "bridge"
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == host["MemorySwap"] == 512 << 20
    assert c.labels[rt.OWNER_LABEL] == s.owner and c.labels[rt.SESSION_LABEL] == s.session_id
    assert c.labels[rt.MODEL_LABEL] == "invert"
    (mount,) = c.attrs["Mounts"]
    assert mount["Source"] == mount["Destination"] == s.shared_dir and mount["RW"]
    assert "Setup complete" in s.logs()

    shared, port, cid = s.shared_dir, s.host_port, s.container_id
    s.stop()
    assert s.state is SessionState.STOPPED and s.url is None
    import docker.errors
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(cid)
    assert wait_until(lambda: _port_free(port), 5) and not os.path.exists(shared)
    s.stop()  # twice is fine
    assert s.state is SessionState.STOPPED


@pytest.mark.slow  # may build the test images first
def test_host_port_5000_taken_still_works(engine, images, sessions):
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 5000))
        blocker.listen(1)
    except OSError:
        pass  # already taken by someone else: the situation we want anyway
    try:
        s = sessions()
        s.start(timeout=120)
        # The port Docker published for the container is the one the session uses,
        # on loopback only (5000 being taken, the engine picked another).
        published = engine.containers.get(s.container_id).attrs["NetworkSettings"]["Ports"]
        assert [(b["HostIp"], int(b["HostPort"])) for b in published["5000/tcp"]] == [
            ("127.0.0.1", s.host_port)]
        assert s.url == f"http://127.0.0.1:{s.host_port}"
        assert requests.get(s.url + "/health-check", timeout=5).json()["status"] == "READY"
    finally:
        blocker.close()


@pytest.mark.slow  # may build the test images first
def test_setup_failure_fails_with_logs(engine, images, sessions, owner):
    s = sessions(env={"FAIL_SETUP": "1"})
    with pytest.raises(RuntimeFailed) as err:
        s.start(timeout=120)
    # The same words as a local process's failed setup: the exception itself.
    assert err.value.message.endswith(
        "failed its setup: RuntimeError: FAIL_SETUP is set: no weights to load")
    assert "FAIL_SETUP is set" in err.value.details
    assert s.state is SessionState.FAILED and "failed its setup" in s.reason
    assert "FAIL_SETUP is set" in s.logs()  # kept after the container is gone
    assert not engine.containers.list(all=True,
                                      filters={"label": f"{rt.OWNER_LABEL}={owner}"})


@pytest.mark.slow  # may build the test images first
def test_stop_while_starting(engine, images, sessions, owner):
    started = threading.Event()
    s = sessions(env={"SETUP_DELAY": "60"},
                 on_event=lambda ev: ev.state is SessionState.STARTING and started.set())
    failure = []
    worker = threading.Thread(target=lambda: failure.append(_raises(s.start, 120)))
    worker.start()
    assert started.wait(60)
    s.stop()
    worker.join(120)  # a start that was not aborted would succeed after its 60 s setup
    assert not worker.is_alive()
    assert isinstance(failure[0], StartAborted), failure[0]
    assert s.state is SessionState.STOPPED
    assert not engine.containers.list(all=True,
                                      filters={"label": f"{rt.OWNER_LABEL}={owner}"})


def _raises(fn, *args):
    try:
        fn(*args)
    except Exception as exc:
        return exc
    return None


@pytest.mark.slow  # may build the test images first
def test_container_killed_mid_prediction(engine, images, sessions):
    s = sessions()
    s.start(timeout=120)
    src = Path(s.shared_dir) / "in.png"
    src.write_bytes(_png(_pattern()))
    answer = []

    def predict():
        try:
            answer.append(requests.post(s.url + "/predictions",
                                        json={"input": {"image": str(src), "delay": 20}},
                                        timeout=60))
        except requests.RequestException as exc:
            answer.append(exc)

    t = threading.Thread(target=predict)
    t.start()
    assert wait_until(lambda: requests.get(s.url + "/health-check", timeout=5)
                 .json()["status"] == "BUSY", 15)
    engine.containers.get(s.container_id).kill()  # the model's container dies mid-run
    t.join(30)
    assert answer and isinstance(answer[0], requests.RequestException)
    assert wait_until(lambda: s.state is SessionState.FAILED, 15)
    assert "container exited (exit code 137)" in s.reason
    assert s.diagnose() == s.reason
    with pytest.raises(RuntimeFailed, match="not running"):
        s.client()


@pytest.mark.slow  # may build the test images first
def test_oom_kill_is_reported_with_the_limit(engine, images, sessions):
    s = sessions("memhog", MEMHOG, mem_limit=200 << 20)
    s.start(timeout=120)
    assert engine.containers.get(s.container_id).attrs["HostConfig"]["Memory"] == 200 << 20
    with s.client() as model:
        with pytest.raises(RunwayError):
            model.run({"megabytes": 1024})
    assert wait_until(lambda: s.state is SessionState.FAILED, 15)
    assert s.oom_killed
    assert "ran out of memory (limit 200 MB)" in s.reason
    assert "container memory limit" in s.reason and "Docker Desktop" in s.reason


@pytest.mark.slow  # may build the test images first
def test_small_allocation_fits(images, sessions):
    s = sessions("memhog", MEMHOG, mem_limit=300 << 20)
    s.start(timeout=120)
    with s.client() as model:
        assert model.run({"megabytes": 20}).outputs["output"] == "held 20 MB"
    assert s.state is SessionState.RUNNING and not s.oom_killed


# ---------------------------------------------------------------- orphans

CRASHER = textwrap.dedent("""
    import time
    from runway_addon.core.runtimes.docker import DockerSession
    s = DockerSession("invert", {image!r}, owner={owner!r})
    s.start(timeout=120)
    print("RUNNING", s.container_id, flush=True)
    time.sleep(600)
""")


@pytest.mark.slow  # may build the test images first
def test_orphan_cleanup_after_crash(engine, images, owner):
    """A Blender that dies with a container running: the next start-up removes that
    container, and leaves alone one without our label, one of another owner and one
    of a Blender still alive."""
    code = CRASHER.format(image=INVERT, owner=owner)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=python_env())
    others = []
    alive = subprocess.Popen(["sleep", "120"])
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "RUNNING", line
        orphan_id = line[1]
        proc.kill()  # the crash: no stop(), no cleanup
        proc.wait(10)
        assert engine.containers.get(orphan_id).status == "running"

        cmd = ["sleep", "1"]
        others.append(engine.containers.create(INVERT, command=cmd))  # unlabelled
        others.append(engine.containers.create(INVERT, command=cmd, labels={
            rt.OWNER_LABEL: "someone-else", rt.PID_LABEL: "1"}))
        others.append(engine.containers.create(INVERT, command=cmd, labels={
            rt.OWNER_LABEL: owner, rt.PID_LABEL: str(alive.pid),
            rt.HOST_LABEL: socket.gethostname()}))  # a Blender still running

        removed = rt.cleanup_orphans(engine, owner)
        assert len(removed) == 1 and removed[0].startswith("runway-invert-")
        import docker.errors
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(orphan_id)
        for c in others:
            c.reload()  # still there
    finally:
        alive.kill()
        if proc.poll() is None:
            proc.kill()
        for c in others:
            c.remove(force=True)
        for c in engine.containers.list(all=True,
                                        filters={"label": f"{rt.OWNER_LABEL}={owner}"}):
            c.remove(force=True)


# ---------------------------------------------------------------- a second, "remote" engine

BRIDGE = "br-rwbtest"


@pytest.fixture
def second_engine(engine, images, tmp_path_factory):
    """A second dockerd on tcp://127.0.0.1:23750 with its own roots and bridge, holding
    a copy of the invert image. Stopped and wiped afterwards."""
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.fail("a second dockerd needs root and the dockerd binary", pytrace=False)
    if not _port_free(23750):
        pytest.fail("port 23750 is in use: the second dockerd cannot listen there",
                    pytrace=False)
    base = Path("/tmp") / f"rwb-d2-{uuid.uuid4().hex[:6]}"  # short: socket paths are limited
    base.mkdir()
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=False)
    subprocess.run(["ip", "addr", "replace", "10.213.7.1/24", "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
    log = open(base / "log", "w")
    # Own bridge, no iptables: it must not touch the first engine's network.
    daemon = subprocess.Popen(
        ["dockerd", "-H", REMOTE_HOST, "--data-root", str(base / "data"),
         "--exec-root", str(base / "exec"), "--pidfile", str(base / "pid"),
         "--bridge", BRIDGE, "--iptables=false", "--ip-masq=false"],
        stdout=log, stderr=subprocess.STDOUT)
    import docker
    remote = None
    try:
        def up():
            nonlocal remote
            try:
                remote = docker.DockerClient(base_url=REMOTE_HOST, timeout=60)
                return remote.ping()
            except Exception:
                return False
        assert wait_until(up, 30), (base / "log").read_text()[-2000:]
        # docker save | docker -H ... load, through the SDK (no CLI output parsed).
        remote.images.load(b"".join(engine.images.get(INVERT).save(named=True)))
        yield remote, daemon
    finally:
        if remote is not None:
            try:
                for c in remote.containers.list(all=True):
                    c.remove(force=True)
            except Exception:
                pass
            remote.close()
        stop_process(daemon, 30)
        log.close()
        subprocess.run(["ip", "link", "del", BRIDGE], check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_remote_engine_runs_then_reports_docker_stopped(second_engine, sessions):
    remote, daemon = second_engine
    s = sessions(docker_host=REMOTE_HOST)
    s.start(timeout=120)
    assert s.shared_dir is None  # the engine cannot see our disk: data URIs instead
    assert s.url == f"http://127.0.0.1:{s.host_port}"
    c = remote.containers.get(s.container_id)
    assert c.labels[rt.OWNER_LABEL] == s.owner
    assert c.attrs["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostIp"] == "127.0.0.1"
    img = _pattern()
    r = requests.post(s.url + "/predictions", timeout=60, json={"input": {
        "image": "data:image/png;base64," + base64.b64encode(_png(img)).decode()}})
    np.testing.assert_array_equal(_decode_output(r.json()["output"]), 255 - img)

    daemon.send_signal(signal.SIGTERM)  # "Docker stopped" while the session runs
    daemon.wait(30)
    assert wait_until(lambda: s.reason.startswith("Docker unavailable"), 20), s.reason
    assert s.state is SessionState.FAILED
    stopping = threading.Thread(target=s.stop)  # must not hang on a dead engine
    stopping.start()
    stopping.join(60)
    assert not stopping.is_alive() and s.state is SessionState.FAILED


@pytest.mark.slow  # may build the test images first
def test_start_stop_cycles_leave_nothing_behind(engine, images, sessions, owner):
    """The soak's rule for the Docker runtime: start/stop cycles (with a run each) grow
    no open files, threads or memory past bench/bench_soak.py's bounds, and leave no
    container of ours."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "bench" / "bench_soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    s = sessions()

    def cycle():
        s.start(timeout=120)
        with s.client() as client:
            assert client.run({"image": _pattern()}).outputs
        s.stop()
        assert s.state is SessionState.STOPPED

    for _ in range(3):  # warm-up: docker-py's connection pool to the engine fills up to 10
        cycle()
    base = soak.resources()
    for _ in range(5):
        cycle()
    grown = soak.growth(base, soak.resources())
    assert not soak.over_bounds(grown), (grown, soak.BOUNDS)
    assert not engine.containers.list(all=True, filters={"label": f"{rt.OWNER_LABEL}={owner}"})


def test_sessions_started_once_each_close_their_engine_connection(engine, images, sessions,
                                                                    owner):
    """As the job pool does (a new session per start): each session closes the engine
    connection it opened, so open files do not grow with the number of sessions."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "bench" / "bench_soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)

    def once():
        s = sessions()
        s.start(timeout=120)
        with s.client() as client:
            assert client.run({"image": _pattern()}).outputs
        s.stop()
        assert s.state is SessionState.STOPPED

    once()
    base = soak.resources()
    for _ in range(6):
        once()
    grown = soak.growth(base, soak.resources())
    # The leak kept about 8 sockets per session (55 over these 6); a few may be in flight.
    assert grown["fds"] <= soak.BOUNDS["fds"], grown


# ---------------------------------------------------------------- clean-up: whose containers stay

def _labelled(engine, owner, pid, started=None, host=None):
    """A created (never started) container carrying an owner's labels."""
    labels = {rt.OWNER_LABEL: owner, rt.PID_LABEL: str(pid),
              rt.HOST_LABEL: host or socket.gethostname()}
    if started is not None:
        labels[rt.STARTED_LABEL] = started
    return engine.containers.create(INVERT, command=["sleep", "1"], labels=labels)


@pytest.mark.slow  # may build the test images first
def test_cleanup_in_the_same_blender_keeps_its_own_live_container(engine, images, sessions,
                                                                  owner):
    """The add-on enabled again in a running Blender runs the start-up clean-up in the
    process that owns a running model: that container is this Blender's, alive, and
    keeps serving."""
    s = sessions()
    s.start(timeout=120)
    c = engine.containers.get(s.container_id)
    assert c.labels[rt.PID_LABEL] == str(os.getpid())
    assert c.labels[rt.STARTED_LABEL] == rt.process_start_time(os.getpid())
    assert rt.cleanup_orphans(engine, owner) == []
    c.reload()
    assert c.status == "running"
    with s.client() as model:
        out = model.run({"image": _pattern()}).outputs["output"].read_bytes()
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(out)).convert("RGB")), 255 - _pattern())


@pytest.mark.slow  # may build the test images first
def test_cleanup_tells_a_live_owner_from_a_reused_pid(engine, images, owner):
    """Kept: a live Blender's (its pid and start time match), an old label without a
    start time whose pid lives. Removed: a dead pid; a live pid that is now another
    process (its start time differs), this Blender's own pid included; another host's."""
    alive = subprocess.Popen(["sleep", "120"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    made = {}
    try:
        assert wait_until(lambda: rt.process_start_time(alive.pid) is not None, 5)
        me = os.getpid()
        made["live owner"] = _labelled(engine, owner, alive.pid,
                                       rt.process_start_time(alive.pid))
        made["old label, live pid"] = _labelled(engine, owner, alive.pid)
        made["dead pid"] = _labelled(engine, owner, gone.pid, "boot:1")
        made["pid reused"] = _labelled(engine, owner, alive.pid, "boot:1")
        made["our pid reused"] = _labelled(engine, owner, me, "boot:1")
        made["other host"] = _labelled(engine, owner, me, rt.process_start_time(me),
                                       host="another-machine")
        removed = set(rt.cleanup_orphans(engine, owner))
        assert removed == {made[k].name for k in ("dead pid", "pid reused", "our pid reused",
                                                  "other host")}
        left = {c.name for c in engine.containers.list(
            all=True, filters={"label": f"{rt.OWNER_LABEL}={owner}"})}
        assert left == {made["live owner"].name, made["old label, live pid"].name}
        alive.kill()
        alive.wait()
        assert set(rt.cleanup_orphans(engine, owner)) == left  # its Blender is gone now
    finally:
        if alive.poll() is None:
            alive.kill()
        for c in engine.containers.list(all=True,
                                        filters={"label": f"{rt.OWNER_LABEL}={owner}"}):
            c.remove(force=True)
