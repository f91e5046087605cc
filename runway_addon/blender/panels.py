"""The Run panel, below the model card in the Runway sidebar tab: where the model
runs, its session (Start / Stop / Logs), Run and Cancel with progress, and
sub-panels for its inputs, options and outputs. Drawing reads plain values only
(the engine's status, the scene's settings): nothing here waits or connects.
"""
from __future__ import annotations

import bpy

from . import directory, docker_status, engine, outputs, props, reports
from .layout import SidebarPanel, for_every_space, wrapped

STATE_ICONS = {"queued": "SORTTIME", "starting": "PLAY", "running": "SEQ_PREVIEW",
               "done": "CHECKMARK", "failed": "ERROR", "cancelled": "CANCEL"}
SESSION_ICONS = {"running": "CHECKMARK", "starting": "PLAY", "preparing": "IMPORT",
                 "failed": "ERROR"}
# What each written output became: two targets of one output often share a name.
TARGET_ICONS = {"IMAGE_EDITOR": "IMAGE", "TEXTURE": "MATERIAL", "STRIP": "SEQUENCE",
                "FILE": "FILE", "TEXT": "TEXT", "OVERLAY": "OVERLAY", "OBJECTS": "OBJECT_DATA"}


def _selected(context):
    card = directory.selected_card(context.window_manager.runway_directory)
    if card is None:
        return None, None, None
    mp = props.model(card.name)
    s = props.settings(context.scene, card.name) if mp and mp.cls else None
    return card, mp, s


class _RunPanel(SidebarPanel):
    @classmethod
    def poll(cls, context):
        card, mp, s = _selected(context)
        return card is not None and mp is not None


class RUNWAY_PT_run(_RunPanel, bpy.types.Panel):
    bl_label = "Run"
    bl_parent_id = "RUNWAY_PT_directory"

    def draw(self, context):
        card, mp, s = _selected(context)
        layout = self.layout
        if s is None:
            layout.label(text="This model cannot run here:", icon="ERROR")
            wrapped(layout, mp.error or "it has no schema")
            return
        col = layout.column()
        col.prop(s, "run_on")
        where = s.run_on if s.run_on != "DEFAULT" else _default_runtime(context)
        if where in ("DOCKER_CPU", "DOCKER_GPU"):
            ok, text = docker_status.status()
            col.label(text=text, icon="CHECKMARK" if ok else ("ERROR" if ok is False else "TIME"))

        eng = engine.current()
        entry = eng.session_of(card.name) if eng else None
        status = eng.status.get(card.name) if eng else None
        box = layout.box()
        row = box.row(align=True)
        state = entry.state.value if entry is not None else "stopped"
        row.label(text=f"Session: {state}", icon=SESSION_ICONS.get(state, "RADIOBUT_OFF"))
        sub = row.row(align=True)
        sub.operator("runway.session_start", text="", icon="PLAY").model = card.name
        sub.operator("runway.session_stop", text="", icon="PAUSE").model = card.name
        sub.operator("runway.show_logs", text="", icon="TEXT").model = card.name
        if status is not None and status.runs:
            usage = f"{status.runs} run(s), model time {status.predict_seconds:.2f} s"
            if status.last_predict:
                usage += f" (last {status.last_predict:.2f} s)"
            box.label(text=usage, icon="TIME")

        if not card.licence.commercial_use.allowed and not s.licence_confirmed:
            warn = layout.box()
            warn.label(text="Not cleared for commercial use", icon="ERROR")
            warn.operator("runway.confirm_licence", icon="CHECKMARK").model = card.name
        row = layout.row(align=True)
        row.scale_y = 1.4
        busy = bool(status and status.active)
        row.operator("runway.run", text="Run" if not busy else "Run Again",
                     icon="PLAY").model = card.name
        if busy:
            row.operator("runway.cancel", text="Cancel", icon="CANCEL").model = card.name
        row.operator("runway.export_job", text="", icon="EXPORT").model = card.name
        if status is not None and status.state:
            line = layout.row()
            line.label(text=status.message or status.state,
                       icon=STATE_ICONS.get(status.state, "INFO"))
            if status.progress is not None and hasattr(line, "progress"):
                line.progress(factor=status.progress, type="BAR", text="")
        if status is not None and status.error is not None:
            err = layout.box()
            err.label(text="Failed", icon="ERROR")
            wrapped(err, status.error.message)
            hint = reports.hint_for(status.error)
            if hint:
                wrapped(err, hint)
        for warning in (status.warnings if status else [])[-3:]:
            layout.label(text=warning[:100], icon="INFO")
        if status is not None and status.applied and not status.active:
            done = layout.column(align=True)
            for a in status.applied[:6]:
                done.label(text=f"{a.output} -> {a.name}",
                           icon=TARGET_ICONS.get(a.target, "FORWARD") if a.ok else "ERROR")


def _default_runtime(context) -> str:
    from .preferences import get_preferences
    prefs = get_preferences(context)
    return prefs.default_runtime if prefs else "LOCAL_PROCESS"


class _RunChild(_RunPanel):
    bl_parent_id = "RUNWAY_PT_run"

    @classmethod
    def poll(cls, context):
        card, mp, s = _selected(context)
        return s is not None


def _draw_value(layout, mp, s, role, f):
    pid = props.prop_id(role, f.name)
    if f.type == "secret":
        layout.label(text=f"{f.label}: secret, never stored in the .blend", icon="LOCKED")
        return
    if not hasattr(s, pid):
        return
    if f.type == "vector":
        row = layout.row(align=True)
        row.prop(s, pid)
        op = row.operator("runway.sample_vector", text="", icon="FILE_REFRESH")
        op.model, op.input = mp.card.name, f.name
        return
    layout.prop(s, pid)


class RUNWAY_PT_run_inputs(_RunChild, bpy.types.Panel):
    bl_label = "Inputs"

    def draw(self, context):
        card, mp, s = _selected(context)
        layout = self.layout
        layout.use_property_split = True
        for f in mp.command.inputs:
            if f.type == "image":
                col = layout.column(align=True)
                col.prop(s, props.prop_id("in", f.name, "src"), text=f.label)
                src = getattr(s, props.prop_id("in", f.name, "src"))
                if src == "PASS":
                    col.prop(s, props.prop_id("in", f.name, "pass"))
                elif src == "IMAGE":
                    col.prop(s, props.prop_id("in", f.name, "image"))
                elif src == "STRIP":
                    col.prop(s, props.prop_id("in", f.name, "strip"))
                elif src == "FILE":
                    col.prop(s, props.prop_id("in", f.name, "file"))
            elif f.type == "text":
                col = layout.column(align=True)
                col.prop(s, props.prop_id("in", f.name, "src"), text=f.label)
                src = getattr(s, props.prop_id("in", f.name, "src"))
                col.prop(s, props.prop_id("in", f.name, {"TYPED": "", "TEXT": "text",
                                                         "FILE": "file"}[src]))
            else:
                _draw_value(layout, mp, s, "in", f)


class RUNWAY_PT_run_options(_RunChild, bpy.types.Panel):
    bl_label = "Setup Options"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        card, mp, s = _selected(context)
        return s is not None and bool(mp.spec.options)

    def draw(self, context):
        card, mp, s = _selected(context)
        layout = self.layout
        layout.use_property_split = True
        layout.label(text="Changing these restarts the model", icon="INFO")
        for f in mp.spec.options:
            _draw_value(layout, mp, s, "opt", f)


class RUNWAY_PT_run_outputs(_RunChild, bpy.types.Panel):
    bl_label = "Outputs"

    def draw(self, context):
        card, mp, s = _selected(context)
        layout = self.layout
        for f in mp.command.outputs:
            box = layout.box().column(align=True)
            box.label(text=f.label, icon="EXPORT")
            # No text="": for an expanded ENUM_FLAG that blanks every item's name.
            box.prop(s, props.prop_id("out", f.name, "targets"))
            chosen = getattr(s, props.prop_id("out", f.name, "targets"))
            if "FILE" in chosen or "STRIP" in chosen:
                box.prop(s, props.prop_id("out", f.name, "path"), text="")
                box.prop(s, props.prop_id("out", f.name, "format"), text="")
            if "TEXTURE" in chosen:
                box.prop(s, props.prop_id("out", f.name, "socket"))
            box.prop(s, props.prop_id("out", f.name, "replace"))


def _result_of(context):
    """(kind, datablock) of the result this editor shows: the Image Editor's image or
    the Sequencer's active strip, when a model made it."""
    space = context.space_data
    if space is not None and space.type == "IMAGE_EDITOR" and space.image is not None:
        return "image", space.image
    if space is not None and space.type == "SEQUENCE_EDITOR":
        ed = context.scene.sequence_editor
        strip = getattr(ed, "active_strip", None) if ed else None
        if strip is not None:
            return "strip", strip
    return None, None


class _ResultPanel:
    bl_region_type = "UI"
    bl_category = "Runway"
    bl_label = "Model Result"

    @classmethod
    def poll(cls, context):
        kind, owner = _result_of(context)
        return owner is not None and bool(owner.get(outputs.PROP))

    def draw(self, context):
        import json
        kind, owner = _result_of(context)
        layout = self.layout
        try:
            record = json.loads(owner[outputs.PROP])
        except (ValueError, KeyError):
            layout.label(text="Its record cannot be read", icon="ERROR")
            return
        col = layout.column(align=True)
        col.label(text=f"{record.get('model', '?')} -> {record.get('output', '?')}",
                  icon="NODE_COMPOSITING")
        col.label(text=f"{record.get('time_utc', '')}  frame {record.get('frame', '')}")
        if record.get("predict_time"):
            col.label(text=f"model time {record['predict_time']:.2f} s, "
                           f"{record.get('runtime', '')}")
        for name, src in (record.get("inputs") or {}).items():
            what = src.get("source", "")
            detail = src.get("image") or src.get("strip") or src.get("pass") or \
                src.get("camera") or src.get("path") or src.get("value", "")
            col.label(text=f"{name}: {what} {detail}"[:80])
        row = layout.row(align=True)
        op = row.operator("runway.run_again", icon="FILE_REFRESH")
        op.kind, op.name = kind, owner.name
        op = row.operator("runway.export_result_job", text="Export Job", icon="EXPORT")
        op.kind, op.name = kind, owner.name


class RUNWAY_PT_result_image_editor(_ResultPanel, bpy.types.Panel):
    bl_space_type = "IMAGE_EDITOR"


class RUNWAY_PT_result_sequence_editor(_ResultPanel, bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"


def draw_status_bar(self, context):
    """Runs in flight, in Blender's status bar (appended to its header, not replacing it)."""
    eng = engine.current()
    if eng is None or not eng.busy():
        return
    for name, status in eng.status.items():
        if not status.active:
            continue
        row = self.layout.row(align=True)
        row.label(text=f"Runway: {status.message or name}",
                  icon=STATE_ICONS.get(status.state, "INFO"))
        if status.progress is not None and hasattr(row, "progress"):
            row.progress(factor=status.progress, type="RING", text="")


_panels = (RUNWAY_PT_run, RUNWAY_PT_run_inputs, RUNWAY_PT_run_options, RUNWAY_PT_run_outputs)
classes = (*for_every_space(_panels), RUNWAY_PT_result_image_editor,
           RUNWAY_PT_result_sequence_editor)


def register() -> None:
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
