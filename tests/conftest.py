"""Shared test harness: real Blender (the bpy module) with a throw-away user folder.

Blender reads BLENDER_USER_RESOURCES once, when bpy is imported, so it is set
here, before any test module can import bpy: no test touches a real user's
Blender configuration.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLENDER_USER = tempfile.mkdtemp(prefix="runway-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = BLENDER_USER

ADDON_PKG = "bl_ext.user_default.runway"


@pytest.fixture(scope="session")
def dist_dir() -> Path:
    """The built zips: from `build.py test` (RUNWAY_DIST_DIR), else built now."""
    given = os.environ.get("RUNWAY_DIST_DIR")
    if given and any(Path(given).glob("*.zip")):
        return Path(given)
    subprocess.run([sys.executable, str(ROOT / "build.py"), "dist"], cwd=ROOT, check=True)
    return ROOT / "dist"


@pytest.fixture(scope="session")
def linux_zip(dist_dir) -> Path:
    matches = sorted(dist_dir.glob("*-linux_x64.zip"))
    assert matches, f"no linux zip in {dist_dir}"
    return matches[0]


@pytest.fixture(scope="session")
def addon(linux_zip):
    """The extension installed from its zip into this process's Blender, enabled."""
    import bpy
    result = bpy.ops.extensions.package_install_files(
        filepath=str(linux_zip), repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}, result
    assert ADDON_PKG in bpy.context.preferences.addons
    return sys.modules[ADDON_PKG]


@pytest.fixture
def blender(addon):
    """A fresh, empty scene with the extension still enabled."""
    import bpy
    bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True)
    assert ADDON_PKG in bpy.context.preferences.addons
    return bpy
