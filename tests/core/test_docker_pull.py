"""DockerSession's pull path against a real, local registry.

No public registry can be reached here, so a CNCF distribution registry (Debian's
``docker-registry``, installed with apt-get when missing) runs as a plain process on
127.0.0.1 with its storage in a temporary folder. The engine allows plain HTTP to
registries on 127.0.0.0/8, so no TLS is needed.

The image pushed there is the invert test image (built offline by buildtools.images,
as in test_docker_runtime.py), re-imported as one new layer with a unique marker
file: the engine must not already hold that layer under another name, or the pull
would say "Already exists" and download nothing.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from runway_addon.core.runtimes import docker as rt
from runway_addon.core.runtimes.base import RuntimeFailed, SessionState, StartAborted
from runway_addon.core.runtimes.docker import DockerSession
from runway_addon.core.runtimes.process import free_port
from tests.helpers import ROOT, docker_engine, stop_process, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MODELS = ROOT / "tests" / "model_servers" / "docker"
INVERT = "runway-test/invert:latest"  # built (or reused) exactly as test_docker_runtime does
REPO = "runway-test/invert"
TAG = "pull"
REGISTRY_PACKAGE = "docker-registry"


# ---------------------------------------------------------------- helpers

def _registry_binary() -> str:
    """The registry's path; installs Debian's package with apt-get when missing."""
    found = shutil.which(REGISTRY_PACKAGE)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"the pull tests need a local registry: install the Debian package "
                    f"'{REGISTRY_PACKAGE}' (apt-get install {REGISTRY_PACKAGE}); it is "
                    "missing and this process cannot install it (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                 REGISTRY_PACKAGE]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            pytest.fail(f"the pull tests need a local registry, and installing "
                        f"'{REGISTRY_PACKAGE}' failed ({' '.join(cmd)}: exit "
                        f"{r.returncode}):\n{(r.stdout + r.stderr)[-2000:]}")
    found = shutil.which(REGISTRY_PACKAGE)
    if not found:
        pytest.fail(f"apt-get installed '{REGISTRY_PACKAGE}' but there is no "
                    f"{REGISTRY_PACKAGE} command on PATH")
    return found


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterator of byte chunks (the engine's export stream)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self):
        return True

    def readinto(self, b):
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _changes(config: dict) -> list[str]:
    """Dockerfile lines that give an imported root the source image's run settings."""
    from buildtools.images import _dockerfile_quote

    lines = []
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        lines.append(f"ENV {key}={_dockerfile_quote(value)}")
    if config.get("WorkingDir"):
        lines.append(f"WORKDIR {config['WorkingDir']}")
    for port in config.get("ExposedPorts") or {}:
        lines.append(f"EXPOSE {port}")
    if config.get("Cmd"):
        lines.append("CMD " + json.dumps(config["Cmd"]))
    for key, value in (config.get("Labels") or {}).items():
        lines.append(f"LABEL {key}={_dockerfile_quote(value)}")
    return lines


def _fresh_copy(engine, source: str, repository: str, tag: str, workdir: Path) -> None:
    """``source``'s file system as one new layer (plus a unique marker file), imported
    as ``repository:tag`` with ``source``'s settings. Nothing of ``source`` is changed."""
    config = engine.images.get(source).attrs["Config"]
    layer = workdir / "layer.tar"
    container = engine.containers.create(source, command=["true"])  # never started
    try:
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(container.export()),
                                                    1 << 20), mode="r|") as src, \
                tarfile.open(layer, "w") as dst:
            for member in src:
                dst.addfile(member, src.extractfile(member) if member.isreg() else None)
            marker = f"pull test {uuid.uuid4().hex}\n".encode()
            info = tarfile.TarInfo(".runway-pull-test")
            info.size, info.mtime = len(marker), int(time.time())
            dst.addfile(info, io.BytesIO(marker))
    finally:
        container.remove(force=True)
    engine.api.import_image_from_file(str(layer), repository=repository, tag=tag,
                                      changes=_changes(config))
    layer.unlink()


def _remove_local(engine, ref: str) -> None:
    import docker.errors

    try:
        engine.images.remove(ref, force=True)  # a tag of ours only: never another name
    except docker.errors.ImageNotFound:
        pass


def _assert_absent(engine, ref: str) -> None:
    import docker.errors

    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(ref)


def _present(engine, ref: str) -> bool:
    import docker.errors

    try:
        engine.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _pattern(h=6, w=7) -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def engine():
    client = docker_engine(120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def registry(engine):
    """``127.0.0.1:PORT`` of a registry process with its storage in a temporary
    folder; stopped and the folder removed afterwards."""
    binary = _registry_binary()
    port = free_port()
    base = Path(tempfile.mkdtemp(prefix="rwb-registry-"))
    (base / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {base / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {uuid.uuid4().hex}\n")
    log = open(base / "registry.log", "w")
    proc = subprocess.Popen([binary, "serve", str(base / "config.yml")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def up():
            try:
                return requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        if not wait_until(up, 30, 0.2):
            pytest.fail(f"the registry did not answer on 127.0.0.1:{port} (exit "
                        f"{proc.poll()}):\n{(base / 'registry.log').read_text()[-2000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc, 15)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def pushed(engine, registry):
    """``REGISTRY/runway-test/invert:pull``: in the registry, and not on this engine."""
    from buildtools import images as build

    build.build_model_image(MODELS / "invert", INVERT)  # reused when up to date
    repository = f"{registry}/{REPO}"
    ref = f"{repository}:{TAG}"
    work = Path(tempfile.mkdtemp(prefix="rwb-pull-"))
    try:
        _fresh_copy(engine, INVERT, repository, TAG, work)
        log = list(engine.images.push(repository, tag=TAG, stream=True, decode=True))
        errors = [item for item in log if item.get("error")]
        assert not errors, errors
        assert any((item.get("aux") or {}).get("Digest") for item in log), log
        _remove_local(engine, ref)
        _assert_absent(engine, ref)
        yield ref
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _remove_local(engine, ref)


@pytest.fixture
def owner(engine):
    """A fresh owner id per test; its containers are checked gone afterwards."""
    who = "test-pull-" + uuid.uuid4().hex[:12]
    yield who
    left = engine.containers.list(all=True, filters={"label": f"{rt.OWNER_LABEL}={who}"})
    for c in left:
        c.remove(force=True)
    assert not left, f"containers outlived their session: {[c.name for c in left]}"


def _pull_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"docker-pull-{name}"]


# ---------------------------------------------------------------- tests

def test_pull_with_progress_then_run(engine, pushed, owner):
    _remove_local(engine, pushed)
    _assert_absent(engine, pushed)
    events = []
    s = DockerSession("invert", pushed, owner=owner, mem_limit=512 << 20,
                      on_event=events.append)
    try:
        s.start(timeout=300)
        assert s.state is SessionState.RUNNING
        pulled = engine.images.get(pushed)  # pulled under the name asked for
        assert len(pulled.attrs["RootFS"]["Layers"]) == 1  # so the sum is the layer

        progress = [e for e in events if e.state is SessionState.PREPARING
                    and e.done is not None]
        assert progress, [(e.state.value, e.message) for e in events]
        assert all(e.message.startswith(f"pulling {pushed}: ") for e in progress)
        done = [e.done for e in progress]
        assert done == sorted(done), done  # one layer here: the layer's bytes never go back
        assert all(0 <= e.done <= e.total for e in progress)
        assert progress[-1].total > 0 and progress[-1].done == progress[-1].total
        states = [e.state for e in events]
        first_start = states.index(SessionState.STARTING)
        assert events.index(progress[-1]) < first_start
        # Started (the container), then the model setting up once its server answers, then ready.
        assert states[first_start:] == [SessionState.STARTING, SessionState.STARTING,
                                        SessionState.RUNNING]
        assert events[first_start + 1].message == "server up; model setting up"

        img = _pattern()
        with s.client() as model:
            data = model.run({"image": img}).outputs["output"].read_bytes()
        out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(out, 255 - img)

        cid = s.container_id
        s.stop()
        assert s.state is SessionState.STOPPED and s.url is None
        import docker.errors
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(cid)
    finally:
        s.stop()
        _remove_local(engine, pushed)


def test_image_missing_from_registry_fails_clearly(engine, registry, owner):
    ref = f"{registry}/runway-test/not-pushed-{uuid.uuid4().hex[:8]}:{TAG}"
    s = DockerSession("ghost", ref, owner=owner)
    with pytest.raises(RuntimeFailed) as err:
        s.start(timeout=120)
    message = err.value.message
    assert f"The Docker image {ref} is not on this machine and could not be pulled" \
        in message, message
    assert "not found" in message or "manifest unknown" in message, message
    assert "python3 build.py models docker" in err.value.hint and err.value.kind == "image-missing"
    assert s.state is SessionState.FAILED and ref in s.reason
    assert s.container_id is None and s.url is None and s.shared_dir is None


def test_stop_during_pull(engine, pushed, owner):
    _remove_local(engine, pushed)
    _assert_absent(engine, pushed)
    events = []
    stopping = threading.Event()
    stopper = []

    def on_event(ev):
        events.append(ev)
        if ev.state is SessionState.STOPPING:
            stopping.set()
        elif ev.state is SessionState.PREPARING and ev.done is not None and not stopper:
            # The first progress event: stop from another thread, and hold the pull
            # loop here until the stop is under way, so it is caught mid-pull.
            t = threading.Thread(target=s.stop)
            stopper.append(t)
            t.start()
            assert stopping.wait(10)

    s = DockerSession("invert", pushed, owner=owner, on_event=on_event)
    try:
        with pytest.raises(StartAborted, match="stopped before it was ready"):
            s.start(timeout=300)
        assert stopper, [(e.state.value, e.message) for e in events]
        stopper[0].join(15)
        assert not stopper[0].is_alive()
        assert s.state is SessionState.STOPPED
        assert s.container_id is None and s.url is None and s.shared_dir is None
        states = [e.state for e in events]
        assert SessionState.STARTING not in states and SessionState.RUNNING not in states
        assert SessionState.FAILED not in states
        assert not engine.containers.list(all=True,
                                          filters={"label": f"{rt.OWNER_LABEL}={owner}"})
        # The thread reading the engine's pull stream ends too, and its connection
        # with it: the engine cancels the pull (a whole pull takes a few seconds here).
        assert wait_until(lambda: not _pull_threads("invert"), 30), _pull_threads("invert")
        assert not wait_until(lambda: _present(engine, pushed), 10, 0.5), \
            "the engine finished the pull after stop()"
    finally:
        s.stop()
        _remove_local(engine, pushed)
