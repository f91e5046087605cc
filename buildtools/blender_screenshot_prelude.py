"""Runs before the caller's script in the windowed Blender of
blender_driver.screenshot(): once the window has drawn (two timer ticks after
start-up), it touches the ready file named by RW_SCREENSHOT_READY; with
RW_SCREENSHOT_SCRIPT_READY set, the caller's script touches it itself."""

import os

import bpy

_rw_ready = os.environ["RW_SCREENSHOT_READY"]
_rw_count = [0]
_rw_by_script = bool(os.environ.get("RW_SCREENSHOT_SCRIPT_READY"))


def _rw_tick():
    _rw_count[0] += 1
    if _rw_count[0] == 1:
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                area.tag_redraw()
        return 0.5
    with open(_rw_ready, "w") as f:
        f.write("ready\n")
    return None


if not _rw_by_script:
    bpy.app.timers.register(_rw_tick, first_interval=1.0)
