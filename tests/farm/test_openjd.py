"""The Open Job Description template (farm/openjd/runway-blender.yaml) under the real
``openjd`` CLI (openjd-cli 0.8.0 from .venv-farm, built from its hashed lock).

Without Blender: ``openjd check`` passes, and with a stand-in ``blender`` that prints its
arguments, ``openjd run`` sends each chunk to one Blender with the right arguments
(environment onEnter once, tasks, onExit once).

With the real Blender 4.3.2 binary (tests/farm/farm_world.py, the Debian root behind a
``blender`` shim on PATH) and real model servers (the local-process runtime):
- no job file: each chunk is ``blender -b -f`` with the scene's post-processing (style
  transfer): every frame of the range is rendered and post-processed, originals kept;
- a job file (the identity test model, gain 0.5) whose frame 2 cannot be read: frame 1 is
  written, the chunk of frame 2 fails, and ``openjd run`` exits non-zero;
- SIGTERM to ``openjd run`` while a chunk's model is working: the job stops, onExit runs,
  and no model server started by the test is left.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from buildtools import envs
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "farm" / "openjd" / "runway-blender.yaml"

linux_root = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux (chroot)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mount)"),
    pytest.mark.skipif(shutil.which("chroot") is None or shutil.which("unshare") is None,
                       reason="needs chroot and unshare"),
]


@pytest.fixture(scope="module")
def openjd() -> Path:
    return envs.ensure(envs.FARM).parent / "openjd"


def run_openjd(openjd, params: dict, env: dict, timeout=300) -> subprocess.CompletedProcess:
    args = [str(openjd), "run", str(TEMPLATE)]
    for k, v in params.items():
        args += ["-p", f"{k}={v}"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    # The whole log, for a failing test (pytest shortens long assertion messages).
    Path(env.get("TMPDIR", "/tmp"), "openjd-last.log").write_text(proc.stdout + proc.stderr)
    return proc


def test_template_passes_openjd_check(openjd):
    proc = subprocess.run([str(openjd), "check", str(TEMPLATE)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passes validation checks" in proc.stdout


FAKE = """#!/bin/sh
echo "FAKE-BLENDER $*"
case "$*" in *"--render-frame 3 "*) exit 1 ;; esac
"""


def fake_runs(out: str) -> list[str]:
    return [line.split("FAKE-BLENDER ", 1)[1] for line in out.splitlines()
            if "FAKE-BLENDER " in line]


def test_each_chunk_is_one_blender_between_enter_and_exit(openjd, tmp_path):
    """A stand-in blender: the commands openjd runs, in order, for both kinds of chunk."""
    (tmp_path / "blender").write_text(FAKE)
    (tmp_path / "blender").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    job = {"BlendFile": "/jobs/shot.blend", "Frames": "1-4,6,9-12", "ChunkSize": 3,
           "AddonModule": "bl_ext.system.runway"}
    proc = run_openjd(openjd, {**job, "JobFile": "/jobs/shot.json"}, env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = fake_runs(proc.stdout + proc.stderr)
    assert len(runs) == 5, runs  # onEnter, three chunks, onExit
    assert runs[0].startswith("-b --addons bl_ext.system.runway /jobs/shot.blend "
                              "--python-exit-code 1 --python ")
    assert runs[0].endswith("runway_prepare.py -- /jobs/shot.json bl_ext.system.runway")
    for run, chunk in zip(runs[1:4], ("1-3", "4,6,9", "10-12")):
        assert run.startswith("-b --addons bl_ext.system.runway /jobs/shot.blend "
                              "--python-exit-code 1 --python "), run
        assert run.endswith(f"runway_run_job.py -- /jobs/shot.json {chunk} "
                            "bl_ext.system.runway"), run
    assert runs[4].startswith("-b --addons bl_ext.system.runway --python-exit-code 1 "
                              "--python ") and "runway_cleanup.py" in runs[4]
    # No job file: render chunks in Blender's frame notation, the post-processing check
    # around them. The stand-in fails on the chunk "3": the job fails, later chunks do
    # not run, onExit still does.
    proc = run_openjd(openjd, {**job, "Frames": "1-4,6,9-12"}, env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    runs = fake_runs(proc.stdout + proc.stderr)
    render = re.compile(r"^-b --addons bl_ext.system.runway /jobs/shot.blend "
                        r"--python-exit-code 1 --python (\S+/runway_post_chunk.py) "
                        r"--render-frame (\S+) --python (\S+) -- bl_ext.system.runway$")
    matches = [render.match(r) for r in runs[1:4]]
    assert all(matches), runs
    assert [m.group(2) for m in matches] == ["1..3", "4,6,9", "10..12"]
    assert all(m.group(1) == m.group(3) for m in matches)
    proc = run_openjd(openjd, {**job, "Frames": "1,3,4", "ChunkSize": 1}, env, timeout=120)
    runs = fake_runs(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert [render.match(r).group(2) for r in runs[1:3]] == ["1", "3"], runs
    assert len(runs) == 4 and "runway_cleanup.py" in runs[3], runs


# ------------------------------------------------------------------ real Blender

@pytest.fixture(scope="module")
def farm(linux_zip):
    from buildtools import debian_blender
    from tests.farm.farm_world import CACHE, IDENTITY, FarmWorld
    from runway_addon.core.runtimes.process import ModelEnvironment
    # The model environment that style transfer and identity share (one lock), made on
    # the host like the other tests do (quick when it is there).
    for model in (ROOT / "models" / "style-transfer", IDENTITY):
        ModelEnvironment(model, CACHE / "model-envs").ensure()
    world = FarmWorld(debian_blender.ensure_root(), linux_zip)
    yield world
    world.close()


def params(farm, **kw) -> dict:
    from tests.farm.farm_world import ADDON
    return {"BlendFile": str(farm.blend), "AddonModule": ADDON, **kw}


def read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def real_blender(fn):
    for mark in reversed([pytest.mark.blender, pytest.mark.network, pytest.mark.slow,
                         *linux_root]):
        fn = mark(fn)
    return fn


@real_blender
def test_render_chunks_are_post_processed_originals_kept(openjd, farm):
    t0 = time.monotonic()
    proc = run_openjd(openjd, params(farm, Frames="1-3", ChunkSize=2), farm.env())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "model environment" in out and "ready" in out  # onEnter prepared it
    render = farm.work / "render"
    for frame in (1, 2, 3):
        original = render / f"frame_{frame:04d}.png"
        processed = render / f"frame_{frame:04d}_runway.png"
        assert original.exists() and processed.exists(), (sorted(os.listdir(render)), out[-8000:])
        a, b = read(original), read(processed)
        assert a.shape == b.shape == (32, 40, 3)
        assert np.abs(a - b).mean() > 5  # styled, and the original is still the render
    # Two chunks, two Blenders; each post-processed all of its frames.
    assert out.count("Runway: frames ") == 2
    assert "Runway: post-processed frames [1, 2]" in out and \
        "Runway: post-processed frames [3]" in out, out[-4000:]
    assert not farm.servers(), "a model server outlived the job"
    print(f"post-processing job: {time.monotonic() - t0:.1f} s")


@real_blender
def test_a_failing_frame_fails_the_job_good_frames_written(openjd, farm):
    """Job file mode, one chunk a frame: frame 1 (a picture) goes through identity with gain
    0.5; frame 2 (a broken file) fails, and with it the job."""
    t0 = time.monotonic()
    job = farm.write_job("half.json", inputs={"image": {"source": "strip", "strip": "Frames"},
                                              "gain": 0.5},
                         outputs={"output": [{"target": "FILE", "path": "//job/id_{frame:04d}"}]},
                         on_failure="skip")
    proc = run_openjd(openjd, params(farm, JobFile=job, Frames="1-2", ChunkSize=1), farm.env())
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-6000:]
    assert "Runway: job file" in out and "model identity (folder)" in out  # onEnter checked it
    made = sorted(p.name for p in (farm.work / "job").glob("*.png"))
    assert made == ["id_0001.png"], out[-6000:]
    good, half = read(farm.work / "good.png"), read(farm.work / "job" / "id_0001.png")
    assert np.abs(half - good // 2).max() <= 1  # the model's output, not a copy
    assert "Runway: job failed on frames 2" in out, out[-4000:]
    assert "Runway: no model server of a finished Blender is left running" in out  # onExit
    assert not farm.servers(), "a model server outlived the job"
    print(f"failing job: {time.monotonic() - t0:.1f} s")


@real_blender
def test_a_cancel_leaves_no_model_server_behind(openjd, farm):
    """SIGTERM to `openjd run` while the chunk's model works on a frame (identity with a
    20 s delay): the task is cancelled, onExit runs, no model server of ours is left."""
    job = farm.write_job("slow.json", inputs={"image": {"source": "strip", "strip": "Frames"},
                                              "delay": 20.0},
                         outputs={"output": [{"target": "FILE", "path": "//slow/s_{frame:04d}"}]})
    args = [str(openjd), "run", str(TEMPLATE)]
    for k, v in params(farm, JobFile=job, Frames="1", ChunkSize=1).items():
        args += ["-p", f"{k}={v}"]
    log = farm.work / "cancel.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=farm.env())
    try:
        def frame_1_running():
            assert proc.poll() is None, log.read_text()[-4000:]
            return '"event": "running", "frame": 1' in log.read_text()
        assert wait_until(frame_1_running, 120, 0.3), log.read_text()[-4000:]
        # The model is at work on frame 1: its server is up (a condition, not a sleep).
        assert wait_until(farm.servers, 30, 0.1), log.read_text()[-4000:]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert rc != 0, out[-4000:]
    assert "Runway: no model server of a finished Blender is left running" in out, out[-4000:]
    left = farm.servers()
    assert not left, f"model servers left after the cancel: {left}\n{out[-4000:]}"
    assert not (farm.work / "slow").exists() or not any((farm.work / "slow").iterdir())
    print(f"cancel to openjd's exit: {time.monotonic() - t0:.1f} s")
