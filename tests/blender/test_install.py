"""The built linux zip installs, registers, unregisters cleanly and re-enables
in every supported Blender line: 4.2 LTS (Python 3.11), 5.0 (3.11), 5.2 (3.13).

Each runs in its own process (one bpy per interpreter) through install_check.py,
the same script the real Blender binary runs.
"""
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from buildtools import envs

HERE = Path(__file__).resolve().parent
EXPECTED_CLASSES = {
    "RUNWAY_PG_endpoint", "RUNWAY_OT_endpoint_add", "RUNWAY_OT_endpoint_remove",
    "RUNWAY_OT_token_set", "RUNWAY_OT_token_clear", "RUNWAY_UL_endpoints", "RunwayPreferences",
    "RUNWAY_PG_model_entry", "RUNWAY_PG_directory", "RUNWAY_UL_models",
    "RUNWAY_OT_directory_refresh",
    # catalog folders, the connection test, the directory's list, workspaces, your own models
    "RUNWAY_PG_catalog_folder", "RUNWAY_OT_catalog_folder_add", "RUNWAY_OT_catalog_folder_remove",
    "RUNWAY_OT_endpoint_test", "RUNWAY_OT_directory_select", "RUNWAY_OT_directory_reset_filters",
    "RUNWAY_MT_workspaces", "RUNWAY_OT_workspace_set", "RUNWAY_OT_workspace_new",
    "RUNWAY_OT_workspace_rename", "RUNWAY_OT_workspace_delete", "RUNWAY_OT_workspace_add_model",
    "RUNWAY_OT_workspace_remove_model", "RUNWAY_OT_workspace_move_model", "RUNWAY_OT_model_add",
    "RUNWAY_OT_model_edit", "RUNWAY_OT_model_remove",
    # the card's gallery (Enlarge, Play Sample) and templates (Use Example)
    "RUNWAY_OT_gallery_view", "RUNWAY_OT_gallery_play", "RUNWAY_OT_template_load",
    # the Model Directory and its card, in the sidebar of each editor
    # the Run panel's operators (buttons, F3 search and scripts)
    "RUNWAY_OT_run", "RUNWAY_OT_confirm_licence", "RUNWAY_OT_cancel", "RUNWAY_OT_session_start",
    "RUNWAY_OT_session_stop", "RUNWAY_OT_stop_all", "RUNWAY_OT_show_logs",
    "RUNWAY_OT_sample_vector", "RUNWAY_OT_run_job", "RUNWAY_OT_export_job",
    "RUNWAY_OT_run_again", "RUNWAY_OT_export_result_job",
    "RUNWAY_PT_result_image_editor", "RUNWAY_PT_result_sequence_editor",
    "RUNWAY_PG_post",  # render post-processing settings, per scene
    # the Model Directory, its card and the Run panel, in the sidebar of each editor
    *(f"RUNWAY_PT_{p}{s}" for p in ("directory", "card", "card_characteristics",
                                    "card_licence", "card_people", "card_versions",
                                    "card_more", "run", "run_inputs", "run_options",
                                    "run_outputs", "post")
      for s in ("", "_image_editor", "_sequence_editor", "_node_editor")),
}
HANDLERS = {"load_pre": ["_on_load_pre", "on_load_pre"], "load_post": ["_on_load_post"],
            "save_pre": ["pack_results"], "render_init": ["on_render_init"],
            "render_post": ["on_render_post"], "render_complete": ["on_render_complete"],
            "render_cancel": ["on_render_cancel"]}
SHELF = {"denoise", "face-detection", "person-segmentation", "pose", "style-transfer",
         "text-to-speech", "upscale"}


def run_install_check(python: Path, zip_path: Path) -> dict:
    user = tempfile.mkdtemp(prefix="runway-install-check-")
    env = dict(os.environ, BLENDER_USER_RESOURCES=user)
    proc = subprocess.run([str(python), str(HERE / "install_check.py"), "--zip", str(zip_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    result["user_dir"] = user
    return result


def assert_install_report(r: dict, *, user_dir, bundled_wheels: bool) -> None:
    """What every supported Blender must show after installing the zip."""
    assert r["install"] in (["FINISHED"], ["ALREADY"]) and r["enabled"]
    assert set(r["classes"]) == EXPECTED_CLASSES
    assert set(r["registered"]) == EXPECTED_CLASSES
    prefs = r["preferences"]
    assert prefs["bl_idname"] == "bl_ext.user_default.runway"
    assert prefs["default_runtime"] == "LOCAL_PROCESS"
    assert "/extensions/" in prefs["cache_path"]
    if user_dir:
        # The cache lives in the extension's own user folder, inside the isolated one.
        assert prefs["cache_path"].startswith(user_dir)
    assert {"token_set", "token_clear", "endpoint_add", "endpoint_remove",
            "directory_refresh"} <= set(r["operators"])
    assert set(r["directory_models"]) == SHELF  # the Model Directory lists the built-in shelf
    assert r["handlers"] == ["_on_load_post"]
    assert r["all_handlers"] == HANDLERS
    # One generated settings group per shelf model, on the scene.
    assert r["scene_property"] and len(r["generated"]) == len(SHELF), r["generated"]
    assert {"run", "cancel", "session_start", "session_stop", "stop_all", "show_logs"} <= \
        set(r["operators"])
    assert r["core_spec"] == "ModelSpec"
    for name, info in r["wheels"].items():
        assert "error" not in info, (name, info)
    if bundled_wheels:
        # Nothing else provides these there: they must come from the bundled
        # wheels, unpacked for this Python into the extensions' site-packages.
        py = "python" + r["python"].rsplit(".", 1)[0]
        for name, info in r["wheels"].items():
            assert f"/extensions/.local/lib/{py}/site-packages/" in info["file"], (name, info)
    after = r["after_disable"]
    assert not after["enabled"] and after["still_registered"] == [] and after["operators"] == []
    assert not after["window_manager_property"] and after["handlers"] == []
    assert after["all_handlers"] == {} and after["generated"] == [] and \
        not after["scene_property"]
    again = r["after_reenable"]
    assert again["enabled"] and set(again["registered"]) == EXPECTED_CLASSES and again["preferences"]


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("env,version", [(envs.BPY42, "4.2."), (envs.DEV, "5.0."),
                                         (envs.BPY52, "5.2.")], ids=["4.2", "5.0", "5.2"])
def test_installs_registers_and_unregisters(env, version, linux_zip):
    r = run_install_check(envs.ensure(env), linux_zip)
    assert r["blender"].startswith(version)
    # In the dev environment the same packages are installed beside bpy for the
    # core tests, so only the other two prove the bundled wheels.
    assert_install_report(r, user_dir=r["user_dir"], bundled_wheels=env is not envs.DEV)
