"""Preferences and tokens in real Blender (bpy 5.0, in this process)."""
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import ADDON_PKG

pytestmark = pytest.mark.blender

SECRET = "r8_TESTtoken_9f8e7d6c5b4a"


def prefs(bpy):
    return bpy.context.preferences.addons[ADDON_PKG].preferences


def test_preferences_exist_under_the_package_name(blender):
    p = prefs(blender)
    assert type(p).bl_idname == ADDON_PKG
    assert p.default_runtime == "LOCAL_PROCESS"
    assert {i.identifier for i in p.bl_rna.properties["default_runtime"].enum_items} == {
        "LOCAL_PROCESS", "DOCKER_CPU", "DOCKER_GPU", "REMOTE"}
    assert p.memory_limit_gb == 8
    # The cache defaults to the extension's user folder, which Blender creates.
    assert Path(p.cache_path()).is_dir()
    assert "extensions" in p.cache_path()


def test_endpoints_add_and_remove(blender):
    p = prefs(blender)
    n = len(p.endpoints)
    assert blender.ops.runway.endpoint_add() == {"FINISHED"}
    assert blender.ops.runway.endpoint_add() == {"FINISHED"}
    names = [e.name for e in p.endpoints]
    assert len(names) == n + 2 and len(set(names)) == len(names)
    assert blender.ops.runway.endpoint_remove(index=len(p.endpoints) - 1) == {"FINISHED"}
    assert len(p.endpoints) == n + 1
    blender.ops.runway.endpoint_remove(index=len(p.endpoints) - 1)


def test_token_never_lands_in_a_blend_file(blender, tmp_path):
    p = prefs(blender)
    blender.ops.runway.endpoint_add()
    ep = p.endpoints[-1]
    ep.name, ep.kind, ep.url = "replicate", "REPLICATE", "owner/model"
    assert blender.ops.runway.token_set(endpoint="replicate", token=SECRET) == {"FINISHED"}

    mod = __import__(ADDON_PKG + ".blender.preferences", fromlist=["_"])
    store = mod.token_store()
    assert store.get("replicate") == SECRET
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600, oct(mode)

    blend = tmp_path / "scene.blend"
    blender.ops.wm.save_as_mainfile(filepath=str(blend))
    blender.ops.wm.save_userpref()
    userpref = Path(os.environ["BLENDER_USER_RESOURCES"]) / "config" / "userpref.blend"
    assert blend.exists() and userpref.exists()
    for f in (blend, userpref):
        assert SECRET.encode() not in f.read_bytes(), f
    # The endpoint itself (not its token) is a preference and was saved.
    assert b"owner/model" in userpref.read_bytes()

    assert blender.ops.runway.token_clear(endpoint="replicate") == {"FINISHED"}
    assert store.get("replicate") is None
    blender.ops.runway.endpoint_remove(index=len(p.endpoints) - 1)


def test_empty_token_is_refused(blender):
    with pytest.raises(RuntimeError, match="empty"):
        blender.ops.runway.token_set(endpoint="x", token="   ")
