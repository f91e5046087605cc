"""The project's linux zip in a real Blender binary: Debian 13's Blender 4.3.2
(Python 3.13) inside a cached Debian root file system.

Installed the way a user or a pipeline would from a shell,
``blender --command extension install-file -r user_default -e ZIP``, then
checked by the same install_check.py that runs under the bpy modules.
The first run builds the root (about 1-2 minutes, needs the Debian mirror);
later runs reuse it.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from buildtools import debian_blender
from tests.blender.test_install import assert_install_report

HERE = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.blender,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux (chroot)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mount)"),
    pytest.mark.skipif(shutil.which("chroot") is None, reason="needs chroot"),
]


@pytest.fixture(scope="module")
def blender_root():
    return debian_blender.ensure_root()


def test_real_binary_installs_registers_and_unregisters(blender_root, linux_zip, tmp_path):
    user_dir = tmp_path / "user"
    inst = debian_blender.install_extension(blender_root, linux_zip, user_dir)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    assert 'Installed "runway"' in inst.stdout + inst.stderr
    assert (user_dir / "extensions" / "user_default" / "runway" / "__init__.py").is_file()

    proc = debian_blender.run_blender_python(
        blender_root, HERE / "install_check.py", user_dir, ["--installed"], timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1][len("RESULT "):])
    assert report["blender"].startswith("4.3.")
    # Blender's paths inside the root: the user folder is mounted there.
    assert_install_report(report, user_dir=None, bundled_wheels=True)
    assert debian_blender.mounts_under(blender_root) == []
