"""Render-pass post-processing: every rendered frame goes through a model.

Works the same for F12, Ctrl+F12, ``blender -b f.blend -a`` and farm chunks
``-f 1..10`` (which run a whole render cycle per frame), because it only uses
what every path has (see shared/blender-render-and-farms.md):

- ``render_init``: the scene's post-processing settings and the model's Run
  settings are turned into a plan of plain values.
- ``render_post``: the Render Result is saved (``save_render``: a PNG as the
  artist sees it, and a multilayer EXR when a model input wants a pass) and the
  frame is queued; the handler returns and Blender renders the next frame while
  the model works on this one. In the GUI this runs on the render thread: it
  only saves files and queues plain values; results are written into Blender on
  the main thread by the engine's timer. In background mode handlers run on the
  main thread, so finished results are written there, between frames.
- ``render_complete`` (background): waits for every queued frame, writes the
  rest, adds the image-sequence strip, prints a summary; any failed frame makes
  the process exit non-zero once the last frame asked for is done.
- ``render_cancel``: cancels what is still queued and says which frames are done.

The original render of every frame is never touched: results go to their own
files (next to the render with a suffix, or in a folder), a strip, or a preview
image.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
from types import SimpleNamespace
from dataclasses import dataclass, field
from typing import Optional

import bpy
from bpy.props import BoolProperty, EnumProperty, PointerProperty, StringProperty

from ..core.errors import RunwayError
from ..core.jobs import Done, JobState, ModelRef
from . import engine, inputs, outputs, props, sessions
from .layout import SidebarPanel, for_every_space

FAILURE_POLICIES = (("STOP", "Stop", "Stop post-processing at the first failed frame (the "
                     "render itself goes on: Blender cannot be stopped from a handler)"),
                    ("SKIP", "Skip the frame", "Log the failed frame and go on with the next"))


class RUNWAY_PG_post(bpy.types.PropertyGroup):
    enabled: BoolProperty(name="Post-process renders", description="Send every rendered frame "
                          "through the model (F12, Ctrl+F12, command-line renders)")
    model: StringProperty(name="Model", description="The model each frame goes through; its "
                          "Run panel settings (inputs, options) apply. A 'Camera render' input "
                          "is the frame just rendered, a 'Render pass' input its pass")
    to_files: BoolProperty(name="Files", default=True,
                           description="Write each processed frame as a file")
    folder: StringProperty(name="Folder", subtype="DIR_PATH",
                           description="Where processed frames go; empty: next to the render")
    suffix: StringProperty(name="Suffix", default="_runway",
                           description="Added to the render's file name")
    file_format: EnumProperty(name="Format", items=[(i, n, d) for i, n, d in
                                                    props.FILE_FORMATS if i != "ASIS"])
    replace: BoolProperty(name="Overwrite earlier results", description="A re-render replaces "
                          "the processed files of an earlier one instead of numbering new ones")
    to_strip: BoolProperty(name="Sequencer strip", description="Add the processed frames as one "
                           "image-sequence strip")
    to_preview: BoolProperty(name="Image Editor", default=True,
                             description="Show the latest processed frame in an Image Editor")
    on_failure: EnumProperty(name="When a frame fails", items=FAILURE_POLICIES, default="STOP")


@dataclass
class Plan:
    """Everything a render needs, gathered once at render_init (plain values)."""

    model: ModelRef
    command: object
    sources: dict
    options: dict
    placement: object
    outputs: list  # output names that land as images
    passes: set
    to_files: bool
    folder: str
    suffix: str
    file_format: str
    replace: bool
    to_strip: bool
    to_preview: bool
    stop_on_failure: bool
    label: str
    version: str


@dataclass
class RenderState:
    plan: Optional[Plan] = None
    error: str = ""  # why the plan could not be made
    frames: dict = field(default_factory=dict)  # job id -> frame
    handles: list = field(default_factory=list)
    done: dict = field(default_factory=dict)  # frame -> [written file paths]
    failed: dict = field(default_factory=dict)  # frame -> message
    stopped: bool = False
    cancelled: bool = False
    pending: set = field(default_factory=set)  # job ids whose Done was not handled yet
    finished_render: bool = False  # render_complete came
    scene_name: str = ""
    summary: str = ""
    last_frame: Optional[int] = None  # render_complete's frame_current is the saved one


# "render": the latest render's state. Background runs of ``-f a..b`` go through a
# whole render cycle per frame: failures and a stop are kept across cycles here.
_state = {"render": None, "failed": {}, "stopped": False}
_lock = threading.Lock()

# In a real Blender binary run with -b, a failed frame makes the exit status non-zero.
# The bpy module (tests, scripts) is told through the report instead of being ended.
_EXITS = bool(getattr(bpy.app, "binary_path", "")) and bpy.app.background


def _log(message: str) -> None:
    print(f"Runway post: {message}", flush=True)


def make_plan(scene) -> Plan:
    post = scene.runway_post
    mp = props.model(post.model)
    if mp is None or mp.cls is None:
        raise RunwayError(f"post-processing model {post.model!r} cannot run here"
                          + (f": {mp.error}" if mp and mp.error else ""),
                          hint="Pick a model of the Model Directory in Post-processing.")
    s = props.settings(scene, post.model)
    sources = inputs.from_settings(mp, s)
    passes = {src.pass_id for src in sources.values() if src.kind == "pass"}
    images = [f.name for f in mp.command.outputs
              if "IMAGE_EDITOR" in outputs.targets_for(f) or f.type in ("image", "file")]
    where = s.run_on if s.run_on != "DEFAULT" else ""
    return Plan(ModelRef.from_card(mp.card), mp.command, sources, props.options_of(mp, s),
                sessions.placement(where), images, passes, post.to_files,
                bpy.path.abspath(post.folder) if post.folder else "", post.suffix,
                post.file_format, post.replace, post.to_strip, post.to_preview,
                post.on_failure == "STOP", mp.card.title,
                mp.card.versions[0].version if mp.card.versions else "")


def _frame_sources(plan: Plan, scene, png: str, exr: str) -> dict:
    """The inputs of this frame: the model's settings as they are now (they may be
    animated), render inputs from the frame just rendered."""
    mp = props.model(plan.model.name)
    s = props.settings(scene, plan.model.name) if mp else None
    sources = inputs.from_settings(mp, s) if s is not None else plan.sources
    out = {}
    for name, src in sources.items():
        if src.kind == "render":
            out[name] = inputs.Source("render_file", path=png)
        elif src.kind == "pass":
            out[name] = inputs.Source("pass_file", path=exr, pass_id=src.pass_id)
        else:
            out[name] = src
    return out


def _targets(plan: Plan, scene, frame: int) -> dict:
    """Files next to the render (or in the folder), the preview image."""
    rendered = scene.render.frame_path(frame=frame)
    stem = os.path.splitext(os.path.basename(rendered))[0]
    folder = plan.folder or os.path.dirname(rendered)
    targets = {}
    for name in plan.outputs:
        ts = []
        if plan.to_files or plan.to_strip:
            extra = "" if len(plan.outputs) == 1 else f"_{name}"
            path = os.path.join(folder, f"{stem}{plan.suffix}{extra}")
            ts.append(outputs.Target("FILE", path=path.replace("{", "{{").replace("}", "}}"),
                                     file_format=plan.file_format, replace=plan.replace))
        if plan.to_preview:
            ts.append(outputs.Target("IMAGE_EDITOR", name=f"Runway post: {plan.model.name}",
                                     replace=True))
        targets[name] = ts
    return targets


def _save_frame(scene, state: RenderState, frame: int, scratch: list) -> tuple[str, str]:
    """The Render Result of ``frame`` as files the worker can read, in a folder of
    the frame's own (added to ``scratch``: removed when the frame's run ends). A pass
    input needs its pass enabled in the View Layer properties before the render."""
    if bpy.data.images.get("Render Result") is None:
        # Some .blend files have no Render Result image in `-b -f` renders; the frame
        # Blender wrote is there by render_post in animations and farm chunks (it is
        # the artist's file: read, never removed).
        written = bpy.path.abspath(scene.render.frame_path(frame=frame))
        if os.path.isfile(written) and not state.plan.passes:
            return written, ""
    folder = tempfile.mkdtemp(prefix="runway-post-")
    scratch.append(folder)
    return inputs.save_render_result(scene, folder, f"frame_{frame:06d}",
                                     bool(state.plan.passes))


# ------------------------------------------------------------------ handlers

@bpy.app.handlers.persistent
def on_render_init(scene, *_args):
    post = getattr(scene, "runway_post", None)
    if post is None or not post.enabled:
        _state["render"] = None
        return
    state = RenderState()
    try:
        state.plan = make_plan(scene)
    except RunwayError as e:
        state.error = str(e)
        _log(f"not post-processing: {state.error}")
    if bpy.app.background and _state["stopped"]:
        state.stopped = True  # an earlier frame of this command line failed: stop
    _state["render"] = state
    if state.plan is not None:
        eng = engine.get()
        if _on_done not in eng.listeners:
            eng.listeners.append(_on_done)
        _log(f"each frame goes through {state.plan.model.name}")


@bpy.app.handlers.persistent
def on_render_post(scene, *_args):
    state = _state["render"]
    if state is None or state.plan is None or state.stopped:
        return
    frame = scene.frame_current
    state.last_frame = frame
    eng = engine.get()
    scratch: list = []
    try:
        png, exr = _save_frame(scene, state, frame, scratch)
        # The handler's scene, not the window's: in the GUI this is the render thread.
        context = SimpleNamespace(scene=scene, view_layer=scene.view_layers[0], object=None)
        handle = eng.submit_run(context, state.plan.model, state.plan.command,
                                _frame_sources(state.plan, scene, png, exr), state.plan.options,
                                _targets(state.plan, scene, frame), state.plan.placement,
                                label=f"{state.plan.label} frame {frame}",
                                version=state.plan.version, status_key=state.plan.model.name,
                                scratch=scratch)
    except RunwayError as e:
        _discard(scratch)  # submit_run removed them if it got them; a failed save did not
        _failed(state, frame, str(e))
        return
    except RuntimeError as e:  # bpy: the render result could not be saved
        _discard(scratch)
        _failed(state, frame, f"the render could not be read: {e}".strip())
        return
    with _lock:
        state.frames[handle.id] = frame
        state.handles.append(handle)
        state.pending.add(handle.id)
    if not engine.on_main_thread():
        return  # the GUI's render thread: the engine's timer writes the results
    for event in eng.queue.poll():  # background: write what is ready, between frames
        eng.handle(event)


def _discard(folders: list) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _failed(state: RenderState, frame: int, message: str) -> None:
    state.failed[frame] = message
    _log(f"frame {frame} failed: {message}")
    if bpy.app.background:
        _state["failed"][frame] = message
    if state.plan is not None and state.plan.stop_on_failure and not state.stopped:
        state.stopped = True
        if bpy.app.background:
            _state["stopped"] = True
        _log("stopping post-processing (the setting says: stop at the first failure); "
             "frames before it still finish")
        for h in state.handles:
            if state.frames.get(h.id, frame) > frame:
                h.cancel()


def _on_done(event, run) -> None:
    """Engine listener (main thread): a frame's run ended."""
    state = _state["render"]
    if state is None or not isinstance(event, Done):
        return
    frame = state.frames.get(event.job_id)
    if frame is None:
        return
    state.pending.discard(event.job_id)
    status = engine.get().status[run.model]
    if event.state is JobState.DONE and (status.error is None or
                                         status.error.job_id != event.job_id):
        state.done[frame] = [a.name for a in status.applied if a.target == "FILE" and a.ok]
    elif event.state is JobState.FAILED:
        err = run.handle.failure or status.error
        _failed(state, frame, err.message if err else "failed")
    if state.finished_render:
        _finish_if_idle(state)


def _finish(state: RenderState, scene) -> None:
    """All frames are in: the strip, the summary."""
    plan = state.plan
    if plan.to_strip and state.done:
        files = [paths[0] for _f, paths in sorted(state.done.items()) if paths]
        if files:
            try:
                strip = outputs.add_image_sequence(scene, files, min(state.done),
                                                   f"{plan.model.name} post")
                _log(f"strip {strip.name!r} with {len(files)} frames")
            except RunwayError as e:
                _log(f"no strip: {e.message}")
    frames = sorted(state.done)
    summary = (f"{len(frames)} frame(s) post-processed" +
               (f" ({frames[0]}-{frames[-1]})" if frames else "") +
               (f", {len(state.failed)} failed: " + ", ".join(
                   f"frame {f}: {m}" for f, m in sorted(state.failed.items()))
                if state.failed else ""))
    _log(summary)
    state.summary = summary


def _finish_if_idle(state: RenderState) -> None:
    """After the render and the last frame's result, once (main thread)."""
    if not state.pending and not state.summary and engine.on_main_thread():
        scene = bpy.data.scenes.get(state.scene_name)
        _finish(state, scene or bpy.context.scene)


@bpy.app.handlers.persistent
def on_render_complete(scene, *_args):
    state = _state["render"]
    if state is None or state.plan is None:
        return
    state.scene_name = scene.name
    state.finished_render = True
    if not engine.on_main_thread():
        # GUI: the timer writes the remaining results; the strip follows the last one,
        # or, when nothing is left in flight, the next timer step finishes.
        engine.get().call_soon(lambda: _finish_if_idle(state))
        return
    eng = engine.get()
    eng.wait(state.handles)
    _finish_if_idle(state)
    if _state["failed"] and _EXITS and _is_last_frame(state.last_frame or scene.frame_current):
        _log("exiting with status 1: a frame failed")
        engine.shutdown()
        sys.stdout.flush()
        raise SystemExit(1)


@bpy.app.handlers.persistent
def on_render_cancel(scene, *_args):
    state = _state["render"]
    if state is None or state.plan is None:
        return
    state.cancelled = True
    for h in state.handles:
        h.cancel()
    if engine.on_main_thread():
        engine.get().wait(state.handles, timeout=30)
    _log(f"render cancelled; frames done: {sorted(state.done) or 'none'}")


def _is_last_frame(frame: int) -> bool:
    """In ``-f`` chunks Blender runs a whole render cycle per frame: the exit status
    is set after the last frame the command line asked for. Unknown: every frame."""
    argv = sys.argv
    asked = []
    for i, arg in enumerate(argv):
        if arg in ("-f", "--render-frame") and i + 1 < len(argv):
            for part in argv[i + 1].split(","):
                m = re.fullmatch(r"(\d+)(?:\.\.(\d+))?", part.strip())
                if m:
                    asked.append(int(m.group(2) or m.group(1)))
        if arg in ("-a", "--render-anim"):
            return True
    return not asked or frame >= max(asked)


def last_report() -> Optional[RenderState]:
    """The state of the latest post-processed render (tests, scripts)."""
    return _state["render"]


# ------------------------------------------------------------------ panel

class RUNWAY_PT_post(SidebarPanel, bpy.types.Panel):
    bl_label = "Render Post-processing"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context):
        self.layout.prop(context.scene.runway_post, "enabled", text="")

    def draw(self, context):
        post = context.scene.runway_post
        layout = self.layout
        layout.active = post.enabled
        layout.prop_search(post, "model", context.window_manager.runway_directory, "models",
                           icon="NODE_COMPOSITING")
        col = layout.column(heading="Results to")
        col.prop(post, "to_files")
        sub = col.column()
        sub.active = post.to_files or post.to_strip
        sub.prop(post, "folder")
        sub.prop(post, "suffix")
        sub.prop(post, "file_format")
        sub.prop(post, "replace")
        col.prop(post, "to_strip")
        col.prop(post, "to_preview")
        layout.prop(post, "on_failure")
        state = _state["render"]
        if state is not None and state.summary:
            layout.label(text=state.summary[:120], icon="INFO")
        elif state is not None and state.error:
            layout.label(text=state.error[:120], icon="ERROR")


@bpy.app.handlers.persistent
def on_load_pre(*_args):
    """A new file: what earlier renders failed or stopped is no longer this file's."""
    _state.update(render=None, failed={}, stopped=False)


HANDLERS = (("load_pre", on_load_pre), ("render_init", on_render_init), ("render_post", on_render_post),
            ("render_complete", on_render_complete), ("render_cancel", on_render_cancel))
classes = (RUNWAY_PG_post, *for_every_space((RUNWAY_PT_post,)))


def register() -> None:
    bpy.types.Scene.runway_post = PointerProperty(type=RUNWAY_PG_post)
    for kind, fn in HANDLERS:
        getattr(bpy.app.handlers, kind).append(fn)


def unregister() -> None:
    for kind, fn in HANDLERS:
        handlers = getattr(bpy.app.handlers, kind)
        if fn in handlers:
            handlers.remove(fn)
    del bpy.types.Scene.runway_post
    _state.update(render=None, failed={}, stopped=False)
