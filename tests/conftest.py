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

from buildtools import envs
from tests.helpers import (ADDON_PKG, DOCKER_TEST_IMAGES, DOCKER_TEST_MODELS, ROOT,
                           docker_engine)
from tests.servers import CogServerPool

BLENDER_USER = tempfile.mkdtemp(prefix="runway-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = BLENDER_USER


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


@pytest.fixture(scope="session")
def cog_venv() -> Path:
    """.venv-cog: the Cog server and what the test predictors import."""
    return envs.ensure(envs.COG).parent.parent


@pytest.fixture(scope="session")
def cog_servers(cog_venv):
    """Real Cog servers for tests/model_servers/cog by name (tests.servers.CogServerPool)."""
    pool = CogServerPool(cog_venv)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def docker_client():
    """The Docker engine (it answered a ping), for the whole session."""
    client = docker_engine(30)
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_images(docker_client):
    """The test images of tests/model_servers/docker, built once per session (reused
    while their content hash matches): folder name -> what buildtools.images built."""
    from buildtools import images as build

    return {name: build.build_model_image(DOCKER_TEST_MODELS / name, tag)
            for name, tag in DOCKER_TEST_IMAGES.items()}
