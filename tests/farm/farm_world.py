"""A farm worker on this machine for the farm tests: the real Blender 4.3.2 binary (the
Debian root of buildtools/debian_blender.py) behind a ``blender`` shim on PATH, the
extension installed in an isolated user folder, and a tiny scene.

The shim execs ``unshare --mount`` + ``chroot`` in place (no fork, no new process group),
so Blender is the very process the farm started: a cancel's signals reach it as they
would on a real worker. Everything the jobs touch lives in one work folder outside /tmp
(the chroot has its own /tmp), bind-mounted at the same path, so paths mean the same on
both sides; openjd's session folders go there too (TMPDIR). The local-process runtime
runs model servers from the host's environment cache (/root/.cache/runway-blender and the
Python it was made with, at the same paths); the add-on's cache_folder points there.
Every process the shim starts carries RUNWAY_FARM_MARK, so a test finds the model servers
it started (and only those) in /proc.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from buildtools import debian_blender
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path("/root/.cache/runway-blender")
PYTHON_HOME = Path(os.path.realpath(sys.base_prefix))  # what the environments link to
ADDON = "bl_ext.user_default.runway"
IDENTITY = ROOT / "tests" / "model_servers" / "process" / "identity"

SHIM = """#!{python}
# blender -> the Debian root's Blender 4.3.2, exec'd in place (written by tests/farm).
import os, shlex, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from buildtools import debian_blender as d
root = {root!r}
cmds, _ = d._mount_plan(Path(root), {binds!r}, {ro_binds!r})
env = dict(d.BASE_ENV)
env.update(d.user_env({user!r}))
env.update({extra!r})
cwd = os.getcwd() if os.getcwd().startswith({work!r}) else "/"
chroot = ["chroot", root, "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, "blender", *sys.argv[1:]]
script = "set -e\\n" + "\\n".join(shlex.join(c) for c in cmds) + "\\nexec " + shlex.join(chroot)
os.execve("/usr/bin/unshare", ["unshare", "--mount", "--propagation", "private", "--",
                               "/bin/sh", "-c", script], env)
"""

SETUP = """
import importlib
import bpy
ADDON = {addon!r}
prefs = bpy.context.preferences.addons[ADDON].preferences
prefs.cache_folder = {cache!r}
bpy.ops.wm.save_userpref()
# The default scene (camera, cube, light). Not an empty one: a .blend saved from
# read_homefile(use_empty=True) has no "Render Result" image in `blender -b -f` renders,
# which the add-on's post-processing reads (see farm/README.md).
bpy.ops.wm.read_homefile()
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 2
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 40, 32
scene.render.resolution_percentage = 100
scene.view_settings.view_transform = "Standard"
scene.render.image_settings.file_format = "PNG"
scene.render.filepath = "//render/frame_"
scene.frame_start, scene.frame_end = 1, 3
scene.frame_current = 1
scene.render.use_sequencer = False  # the strip below is an input, not the picture
world = bpy.data.worlds.new("W")
world.use_nodes = True
colour = world.node_tree.nodes["Background"].inputs["Color"]
for frame, rgb in ((1, (0.8, 0.2, 0.1)), (2, (0.1, 0.6, 0.2)), (3, (0.1, 0.2, 0.9))):
    colour.default_value = (*rgb, 1.0)
    colour.keyframe_insert("default_value", frame=frame)
scene.world = world
# Render post-processing (the no-job-file path): every frame through style transfer.
props = importlib.import_module(ADDON + ".blender.props")
s = props.settings(scene, "style-transfer")
setattr(s, props.prop_id("in", "image", "src"), "CAMERA")
post = scene.runway_post
post.enabled, post.model, post.to_preview = True, "style-transfer", False
# A two-image strip for job files: frame 1 a picture, frame 2 a broken file.
ed = scene.sequence_editor_create()
strip = ed.sequences.new_image("Frames", {good!r}, channel=1, frame_start=1)
strip.elements.append("bad.png")
bpy.ops.wm.save_as_mainfile(filepath={blend!r})
print("SETUP OK", bpy.app.version_string)
"""


class FarmWorld:
    def __init__(self, root: Path, zip_path: Path):
        self.root = root
        self.token = secrets.token_hex(6)
        self.work = Path(tempfile.mkdtemp(prefix="runway-farm-", dir="/var/tmp"))
        self.user, self.bin, self.tmp = self.work / "user", self.work / "bin", self.work / "tmp"
        for d in (self.bin, self.tmp):
            d.mkdir()
        self.blend = self.work / "scene.blend"
        self.identity = self.work / "identity"  # a copy: the server may write next to it
        shutil.copytree(IDENTITY, self.identity, ignore=shutil.ignore_patterns("__pycache__"))
        inst = debian_blender.install_extension(root, zip_path, self.user)
        assert inst.returncode == 0, inst.stdout[-3000:] + inst.stderr[-3000:]
        binds = {str(self.work): str(self.work), str(CACHE): str(CACHE)}
        ro_binds = {str(PYTHON_HOME): str(PYTHON_HOME)}
        # The mount points the shim binds onto, made once here. Only this world's own is
        # removed at the end: the shared ones (the cache, Python) may be in use by another
        # run in its own mount namespace right now.
        debian_blender._mount_plan(root, {str(CACHE): str(CACHE)}, ro_binds)
        _cmds, self._created = debian_blender._mount_plan(root, {str(self.work): str(self.work)},
                                                          None)
        shim = self.bin / "blender"
        shim.write_text(SHIM.format(
            python=sys.executable, repo=str(ROOT), root=str(root), binds=binds,
            ro_binds=ro_binds, user=str(self.user), work=str(self.work),
            extra={"RUNWAY_FARM_MARK": self.token, "PYENV_ROOT": "/root/.pyenv"}))
        shim.chmod(0o755)
        y, x = np.mgrid[0:32, 0:40]
        Image.fromarray(np.dstack([x * 6, y * 8, np.full_like(x, 200)]).astype(np.uint8)).save(
            self.work / "good.png")
        (self.work / "bad.png").write_bytes(b"not a picture")
        setup = self.work / "setup.py"
        setup.write_text(SETUP.format(addon=ADDON, cache=str(CACHE), blend=str(self.blend),
                                  good=str(self.work / "good.png")))
        proc = subprocess.run([str(shim), "-b", "--python-exit-code", "1", "--python",
                               str(setup)], capture_output=True, text=True, timeout=300,
                              env=self.env())
        assert proc.returncode == 0 and "SETUP OK 4.3" in proc.stdout, \
            proc.stdout[-3000:] + proc.stderr[-3000:]

    def env(self) -> dict:
        env = dict(os.environ)
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        env["TMPDIR"] = str(self.tmp)  # openjd's session folders: visible in the root
        env.pop("PYTHONPATH", None)
        return env

    def write_job(self, name: str, **data) -> Path:
        job = {"version": 1, "model": {"folder": str(self.identity)},
               "runtime": "LOCAL_PROCESS", **data}
        path = self.work / name
        path.write_text(json.dumps(job))
        return path

    def servers(self) -> list[int]:
        """Live model servers (cog.server.http) that this world's Blenders started."""
        mark = f"RUNWAY_FARM_MARK={self.token}".encode()
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmdline = (d / "cmdline").read_bytes()
                if b"cog.server.http" not in cmdline:
                    continue
                if mark in (d / "environ").read_bytes().split(b"\0"):
                    stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    if stat[0] != "Z":
                        found.append(int(d.name))
            except OSError:
                continue
        return found

    def close(self) -> None:
        for pid in self.servers():  # never leave one behind, even when a test failed
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass  # ended by itself meanwhile
        wait_until(lambda: not self.servers(), 10)  # gone before their files are removed
        debian_blender._remove_created(self._created)
        if os.environ.get("RUNWAY_FARM_KEEP"):  # to read the logs of a failed run
            print(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)
