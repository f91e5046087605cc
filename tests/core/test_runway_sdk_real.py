"""The Runway client against REAL Runway Model SDK servers (runway-python 0.6.1).

The SDK is the vendored tarball in ../shared/vendor/runway-model-sdk (never on the
package index); its environment ``.venv-runway-sdk`` is built on first use from
``buildtools/locks/venv-runway-sdk-py311.txt`` (every file pinned by sha256) plus the
tarball, checked against RUNWAY_SDK_SHA256. The model is
tests/servers/runway_sdk_real/all_types.py, run through launch.py (the SDK's
base64.decodestring fix for Python 3.9+).

What the stand-in (tests/servers/runway_sdk_server.py, test_runway_client.py) still
covers because a real SDK server cannot show it: hosted-model endpoints (/v1/...),
429/502 retries and Retry-After, tokens, and injected faults (test_faults.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from runway_addon.core.errors import ServerError, SpecValidationError
from runway_addon.core.protocols.base import HealthState
from runway_addon.core.protocols.detect import detect_protocol
from runway_addon.core.protocols.runway import RunwayClient
from runway_addon.core.runtimes.process import free_port
from runway_addon.core.spec import Protocol
from tests.helpers import stop_process

pytestmark = [pytest.mark.network, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT.parent / "shared" / "vendor" / "runway-model-sdk"
TARBALL = VENDOR / "runway-model-sdk-0.6.1-18ed07e.tar.gz"
RUNWAY_SDK_SHA256 = "edfcf6a0b09e1dc3893536b3994304d4c77face45518e203d3fff7dc3770c809"
LOCK = ROOT / "buildtools" / "locks" / "venv-runway-sdk-py311.txt"
VENV = ROOT / ".venv-runway-sdk"
MODELS = ROOT / "tests" / "servers" / "runway_sdk_real"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """``.venv-runway-sdk``'s python, built from the hashed lock and the vendored SDK."""
    if not TARBALL.exists():
        pytest.fail(f"the vendored Runway SDK is missing: {TARBALL}", pytrace=False)
    assert _sha256(TARBALL) == RUNWAY_SDK_SHA256, "the vendored SDK tarball changed"
    python = VENV / "bin" / "python"
    stamp = VENV / ".runway-lock.sha256"
    want = _sha256(LOCK) + RUNWAY_SDK_SHA256
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    from buildtools.envs import find_python
    if not python.exists():
        subprocess.run([find_python("3.11"), "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, "--require-hashes", "-r", str(LOCK)], check=True)
    subprocess.run([*pip, str(TARBALL)], check=True)
    stamp.write_text(want)
    return python


class RealServer:
    def __init__(self, python: Path, model: Path, tmp: Path, options: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / f"sdk-{self.port}.log", "wb")
        env = dict(os.environ, RW_HOST="127.0.0.1", RW_PORT=str(self.port),
                   RW_MODEL_OPTIONS=json.dumps(options or {}))
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen([str(python), str(MODELS / "launch.py"), str(model)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, client, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the SDK server exited ({self.proc.returncode}): "
                            f"{Path(self.log.name).read_text(errors='replace')[-3000:]}")
            if client.health(timeout=1).state is HealthState.READY:
                return
            time.sleep(0.2)
        pytest.fail("the SDK server did not become ready")

    def stop(self):
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def real(sdk_python, tmp_path_factory):
    server = RealServer(sdk_python, MODELS / "all_types.py", tmp_path_factory.mktemp("sdk"))
    client = RunwayClient(server.url, timeout=30)
    try:
        server.wait_ready(client)
        client.spec()
        yield client
    finally:
        client.close()
        server.stop()


def test_detected_and_described(real):
    assert detect_protocol(real.url) is Protocol.RUNWAY
    spec = real.spec()
    names = {c.name for c in spec.commands}
    assert {"info", "scalars", "invert", "alpha", "segment", "landmarks", "fail"} <= names
    assert [o.name for o in spec.options] == ["scale", "mode", "slow_setup"]
    types = {f.name: f.type for f in spec.command("scalars").inputs}
    assert types == {"t": "text", "n": "number", "b": "boolean", "c": "category",
                     "v": "vector", "l": "array", "p": "image_point",
                     "box": "image_bounding_box", "x": "any"}


def test_every_scalar_type_round_trips(real):
    values = {"t": "hello", "n": 2.5, "b": True, "c": "b", "v": [0.1, 0.2, 0.3],
              "l": ["x", "y"], "p": [0.25, 0.75], "box": [0.1, 0.2, 0.3, 0.4],
              "x": {"any": [1, 2]}}
    out = real.run(values, "scalars").outputs
    assert out["t"] == "hello" and out["n"] == 2.5 and out["b"] is True and out["c"] == "b"
    assert np.allclose(out["v"], values["v"]) and out["l"] == ["x", "y"]
    assert np.allclose(out["p"], values["p"]) and np.allclose(out["box"], values["box"])
    assert out["x"] == {"any": [1, 2]}


def test_image_in_image_out(real):
    img = np.zeros((8, 6, 3), np.uint8)
    img[..., 0] = 200
    out = real.run({"image": img}, "invert", output_format="PNG").outputs["image"]
    assert out.shape == (8, 6, 3) and int(out[0, 0, 0]) == 55 and int(out[0, 0, 1]) == 255


def test_four_channel_output(real):
    out = real.run({"image": np.zeros((4, 4, 3), np.uint8)}, "alpha").outputs["image"]
    assert out.shape[-1] == 4 and int(out[0, 0, 3]) == 128
    with pytest.raises(SpecValidationError, match="alpha"):
        real.run({"image": np.zeros((4, 4, 3), np.uint8)}, "alpha", output_format="JPEG")


def test_segmentation_and_landmarks(real):
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2] = 255
    seg = real.run({"image": img}, "segment").outputs["map"]
    assert seg.shape[:2] == (4, 4) and int(seg[0, 0]) == 1 and int(seg[3, 3]) == 0
    pts = real.run({}, "landmarks").outputs["points"]
    assert np.allclose(pts, [[0.25, 0.5], [0.75, 0.5]])


def test_setup_options_are_applied(real):
    real.setup({"scale": 2.0, "mode": "best"})
    out = real.run({}, "info").outputs
    assert out == {"scale": 2.0, "mode": "best"}
    real.setup({})  # the full set always goes: omitted options return to their defaults
    assert real.run({}, "info").outputs == {"scale": 1.0, "mode": "fast"}


def test_client_side_limits_before_sending(real):
    with pytest.raises(SpecValidationError) as err:
        real.run({"t": "x" * 50, "n": 11, "v": [1.0], "p": [0, 0], "box": [0, 0, 1, 1]},
                 "scalars")
    fields = {i.field for i in err.value.issues}
    assert {"t", "n", "v"} <= fields


def test_inference_error_carries_the_traceback(real):
    with pytest.raises(ServerError) as err:
        real.run({"t": "x"}, "fail")
    assert err.value.status == 500 and "broke on purpose" in err.value.details


def test_bad_setup_option_names_the_field(real):
    with pytest.raises(SpecValidationError, match="scale"):
        real.setup({"scale": 99})


def test_slow_setup_counts_as_starting_then_ready(sdk_python, tmp_path):
    server = RealServer(sdk_python, MODELS / "all_types.py", tmp_path, {"slow_setup": 2})
    client = RunwayClient(server.url, timeout=30, health_timeout=0.5)
    try:
        t0 = time.monotonic()
        assert client.health().state is HealthState.STARTING  # the port opens after setup
        client.wait_until_ready(60)
        assert time.monotonic() - t0 >= 1.5
        assert client.health().state is HealthState.READY
    finally:
        client.close()
        server.stop()
