"""Workspaces and your own models in real Blender: the operators, the directory's
workspace filter, the active workspace saved per .blend, persistence across new
Blender processes writing at once, and a model you add running through the Run panel."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import ADDON_PKG, ROOT, mod

pytestmark = pytest.mark.blender


@pytest.fixture
def ws_env(blender):
    directory = mod("blender.directory")
    store = directory.workspace_store()
    before = {w.id for w in store.load()}
    assert blender.ops.runway.directory_refresh() == {"FINISHED"}
    yield blender, directory, store
    for w in store.load():
        if w.id not in before:
            store.delete(w.id)
    d = blender.context.window_manager.runway_directory
    directory.reset_filters(d)


def test_workspaces_through_the_operators_and_the_directory(ws_env):
    bpy, directory, store = ws_env
    d = bpy.context.window_manager.runway_directory
    scene = bpy.context.scene
    directory.select_model(d, "upscale")
    assert bpy.ops.runway.workspace_new(name="Lookdev") == {"FINISHED"}
    ws = directory.active_workspace()
    assert ws.name == "Lookdev" and ws.models == ["upscale"] and scene.runway_workspace == ws.id
    for name in ("pose", "denoise"):
        assert bpy.ops.runway.workspace_add_model(model=name) == {"FINISHED"}
    assert directory.matching_names(d) == ["upscale", "pose", "denoise"]  # workspace order
    assert bpy.ops.runway.workspace_move_model(model="denoise", offset=-2) == {"FINISHED"}
    assert directory.matching_names(d) == ["denoise", "upscale", "pose"]
    d.search = "pose"
    assert directory.matching_names(d) == ["pose"]
    directory.select_model(d, "text-to-speech")  # not in the workspace: no card below
    assert directory.selected_card(d) is None
    d.search = ""
    assert bpy.ops.runway.workspace_remove_model(model="upscale") == {"FINISHED"}
    assert bpy.ops.runway.workspace_rename(name="Look dev") == {"FINISHED"}
    assert store.get(ws.id).name == "Look dev" and store.get(ws.id).models == ["denoise", "pose"]
    assert bpy.ops.runway.workspace_set(workspace="") == {"FINISHED"}
    assert len(directory.matching_names(d)) == len(d.models)
    assert bpy.ops.runway.workspace_set(workspace=ws.id) == {"FINISHED"}
    assert bpy.ops.runway.workspace_delete() == {"FINISHED"}
    assert store.get(ws.id) is None and scene.runway_workspace == ""
    with pytest.raises(RuntimeError, match="no longer exists"):
        bpy.ops.runway.workspace_set(workspace=ws.id)


CHILD = textwrap.dedent("""
    import json, sys
    import bpy
    # Installed by the test's own Blender in the same user folder: enable it here.
    bpy.ops.preferences.addon_enable(module={pkg!r})
    directory = sys.modules[{pkg!r} + ".blender.directory"]
    bpy.ops.wm.open_mainfile(filepath={blend!r})
    ws = directory.active_workspace()
    tag = sys.argv[-1]
    for i in range(25):
        bpy.ops.runway.workspace_add_model(model=f"{{tag}}-{{i}}")
    print("RESULT " + json.dumps({{"name": ws.name, "models": ws.models[:2]}}))
""")


@pytest.mark.slow
def test_workspaces_outlive_blender_and_two_blenders_write_at_once(ws_env, linux_zip,
                                                                   tmp_path):
    bpy, directory, store = ws_env
    ws = store.create("Comp", ["upscale", "pose"])
    bpy.context.scene.runway_workspace = ws.id
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_homefile(use_factory_startup=True, use_empty=True)
    assert bpy.context.scene.runway_workspace == ""

    script = tmp_path / "child.py"
    script.write_text(CHILD.format(pkg=ADDON_PKG, blend=str(blend)))
    env = dict(os.environ)  # the same BLENDER_USER_RESOURCES: the same user folder
    procs = [subprocess.Popen([sys.executable, str(script), "--", tag], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for tag in ("a", "b")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
        result = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
        # A new Blender opened the .blend: its workspace, with its models.
        assert result == {"name": "Comp", "models": ["upscale", "pose"]}
    models = store.get(ws.id).models
    assert sorted(models[2:]) == sorted(f"{t}-{i}" for t in "ab" for i in range(25))
    assert not store.problem
    bpy.ops.wm.open_mainfile(filepath=str(blend))  # this .blend remembers it here too
    assert directory.active_workspace().id == ws.id


def test_a_broken_workspace_file_is_shown_and_kept(ws_env):
    bpy, directory, store = ws_env
    path = store.path
    saved = path.read_bytes() if path.exists() else None
    try:
        path.write_text("{broken")
        assert store.load() == []
        assert "kept as" in store.problem
        aside = [p for p in path.parent.glob("workspaces.json.broken-*")]
        assert aside and any(p.read_text() == "{broken" for p in aside)
        for p in aside:
            p.unlink()
    finally:
        store.problem = ""
        if saved is not None:
            path.write_bytes(saved)


@pytest.fixture
def user_models_env(ws_env, tmp_path):
    from runway_addon.core.runtimes.process import default_cache_dir
    bpy, directory, store = ws_env
    prefs = bpy.context.preferences.addons[ADDON_PKG].preferences
    saved_cache = prefs.cache_folder
    prefs.cache_folder = str(default_cache_dir())  # the shared model environments
    users = mod("blender.preferences").user_models_folder()
    before = set(os.listdir(users))
    yield bpy, directory
    mod("blender.engine").shutdown()
    for name in set(os.listdir(users)) - before:
        shutil.rmtree(os.path.join(users, name))
    prefs.cache_folder = saved_cache
    bpy.ops.runway.directory_refresh()


@pytest.mark.slow
@pytest.mark.network
def test_a_model_folder_you_add_runs_through_the_run_panel(user_models_env, tmp_path):
    bpy, directory = user_models_env
    props = mod("blender.props")
    folder = tmp_path / "somewhere" / "my_identity"
    shutil.copytree(ROOT / "tests" / "model_servers" / "process" / "identity", folder,
                    ignore=shutil.ignore_patterns("card.json"))
    ws = directory.workspace_store().create("Mine")
    bpy.context.scene.runway_workspace = ws.id
    assert bpy.ops.runway.model_add(kind="FOLDER", folder=str(folder), title="My Identity",
                                    keywords="mine, test") == {"FINISHED"}
    d = bpy.context.window_manager.runway_directory
    card = directory.selected_card(d)
    assert card.name == "my_identity" and card.title == "My Identity" and card.is_user_model
    assert card.folder == str(folder) and card.keywords == ["mine", "test"]
    assert directory.workspace_store().get(ws.id).models == ["my_identity"]
    assert directory.matching_names(d) == ["my_identity"]
    # Editable afterwards too.
    assert bpy.ops.runway.model_edit(model="my_identity", title="Mirror", short_title="",
                                     task="transform", overview="Sends the image back.",
                                     keywords="mine") == {"FINISHED"}
    assert directory.get_catalog().get("my_identity").title == "Mirror"

    # The Run panel: widgets from the spec, and a real run.
    s = props.settings(bpy.context.scene, "my_identity")
    assert s is not None, props.model("my_identity").error
    img = np.zeros((4, 5, 4), np.uint8)
    img[..., 0], img[..., 3] = 200, 255
    image = bpy.data.images.new("src", width=5, height=4, alpha=True)
    image.pixels.foreach_set((img.astype(np.float32) / 255).reshape(-1))
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), image)
    # The licence is not stated by a folder: the run asks first (as for any such model).
    assert bpy.ops.runway.run(model="my_identity", accept_licence=True) == {"FINISHED"}
    status = mod("blender.engine").get().status["my_identity"]
    assert status.runs == 1 and status.error is None

    assert bpy.ops.runway.model_remove(model="my_identity") == {"FINISHED"}
    assert "my_identity" not in {c.name for c in directory.get_catalog().cards}
    assert folder.is_dir()  # the model's own folder is never touched


@pytest.mark.network
def test_a_running_server_you_add_gets_widgets_offline(user_models_env, cog_venv):
    from tests.servers import COG_MODELS, CogServer
    bpy, directory = user_models_env
    props = mod("blender.props")
    server = CogServer(cog_venv, COG_MODELS / "image")
    try:
        server.wait_settled()
        assert bpy.ops.runway.model_add(kind="URL", url=server.url) == {"FINISHED"}
    finally:
        server.stop()
    d = bpy.context.window_manager.runway_directory
    card = directory.selected_card(d)
    assert card.source.kind == "url" and card.source.protocol == "cog"
    # The server is gone: the widgets come from the spec saved beside the card.
    bpy.ops.runway.directory_refresh()
    mp = props.model(card.name)
    assert mp.cls is not None and [f.name for f in mp.command.inputs][:1] == ["image"]


def test_adding_a_broken_source_says_what_is_wrong(user_models_env, tmp_path):
    bpy, directory = user_models_env
    with pytest.raises(RuntimeError, match="no cog.yaml"):
        bpy.ops.runway.model_add(kind="FOLDER", folder=str(tmp_path))
    with pytest.raises(RuntimeError, match="http"):
        bpy.ops.runway.model_add(kind="URL", url="localhost:5000")


@pytest.mark.docker
@pytest.mark.network
@pytest.mark.slow
def test_a_docker_image_you_add_runs_through_the_run_panel(user_models_env):
    """A locally built image, added by name: its card from the image's schema label,
    then a real run in Docker (the default Local process cannot run an image, so it
    runs on Local CPU), recorded as recently used."""
    from buildtools import images as build

    bpy, directory = user_models_env
    props = mod("blender.props")
    tag = "runway-test/invert:latest"
    build.build_model_image(ROOT / "tests" / "model_servers" / "docker" / "invert", tag)
    prefs = bpy.context.preferences.addons[ADDON_PKG].preferences
    assert prefs.default_runtime == "LOCAL_PROCESS"
    assert bpy.ops.runway.model_add(kind="IMAGE", image=tag, title="Negative",
                                    short_title="Negative") == {"FINISHED"}
    d = bpy.context.window_manager.runway_directory
    card = directory.selected_card(d)
    assert card.name == "invert" and card.source.kind == "image" and card.source.value == tag
    assert card.title == "Negative" and card.list_title == "Negative"

    s = props.settings(bpy.context.scene, "invert")
    assert s is not None, props.model("invert").error
    img = np.zeros((4, 5, 4), np.uint8)
    img[..., 0], img[..., 1], img[..., 3] = 200, 30, 255
    image = bpy.data.images.new("to-invert", width=5, height=4, alpha=True)
    image.pixels.foreach_set((img.astype(np.float32) / 255).reshape(-1))
    setattr(s, props.prop_id("in", "image", "src"), "IMAGE")
    setattr(s, props.prop_id("in", "image", "image"), image)
    before = set(bpy.data.images.keys())
    assert bpy.ops.runway.run(model="invert", accept_licence=True) == {"FINISHED"}
    status = mod("blender.engine").get().status["invert"]
    assert status.runs == 1 and status.error is None
    made = [bpy.data.images[n] for n in set(bpy.data.images.keys()) - before]
    result = next(i for i in made if "runway" in i)
    assert json.loads(result["runway"])["runtime"] == "DOCKER_CPU"
    px = np.empty(len(result.pixels), np.float32)
    result.pixels.foreach_get(px)
    rgb = px.reshape(4, 5, 4)[..., :3]
    assert np.allclose(rgb[..., 0], 55 / 255, atol=0.02)  # 255 - 200
    assert np.allclose(rgb[..., 1], 225 / 255, atol=0.02)  # 255 - 30
    assert directory.recent_store().latest(1) == ["invert"]
