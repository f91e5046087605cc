"""The Run panel's settings of a model written as a job file (what a run by hand did),
to run headless or on a farm; ``write_job`` is the one writer of job files from the UI."""
from __future__ import annotations

import json

import bpy

from ...core import jobfile
from ...core.errors import RunwayError
from .. import directory
from ..reports import report_error


def export_job(context, model_name: str) -> dict:
    """The Run panel's settings of a model as a job file (what a run by hand did)."""
    from .. import inputs as blender_inputs, props
    mp = props.model(model_name)
    s = props.settings(context.scene, model_name)
    if mp is None or s is None:
        raise RunwayError(f"model {model_name!r} has no Run settings here")
    job_inputs = {}
    for name, src in blender_inputs.from_settings(mp, s).items():
        entry = {"source": src.kind}
        if src.kind == "pass":
            entry["pass"] = src.pass_id
        elif src.kind in ("image", "strip", "text"):
            entry[src.kind] = getattr(src, src.kind)
        elif src.kind == "file":
            entry["path"] = src.path
        elif src.kind == "value":
            entry["value"] = src.value
        job_inputs[name] = entry
    outs = {}
    for f in mp.command.outputs:
        chosen = getattr(s, props.prop_id("out", f.name, "targets"))
        outs[f.name] = [{"target": t, "replace": getattr(s, props.prop_id("out", f.name,
                                                                           "replace")),
                         "path": getattr(s, props.prop_id("out", f.name, "path")),
                         "format": getattr(s, props.prop_id("out", f.name, "format")),
                         "socket": getattr(s, props.prop_id("out", f.name, "socket"))}
                        for t in sorted(chosen) if t != "NONE"]
    data = {"version": 1, "model": {"catalog": model_name},
            "runtime": None if s.run_on == "DEFAULT" else s.run_on,
            "options": props.options_of(mp, s), "inputs": job_inputs, "outputs": outs,
            "frames": str(context.scene.frame_current)}
    jobfile.parse(data)  # what we write must load again
    return data


def write_job(op, make) -> set:
    """Write the job ``make()`` returns to ``op.filepath``; errors become the report."""
    try:
        data = make()
    except RunwayError as e:
        return report_error(op, e)
    path = bpy.path.abspath(op.filepath)
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
    except OSError as e:
        op.report({"ERROR"}, f"cannot write {path}: {e.strerror or e}")
        return {"CANCELLED"}
    op.report({"INFO"}, f"job written to {path}")
    return {"FINISHED"}


class RUNWAY_OT_export_job(bpy.types.Operator):
    bl_idname = "runway.export_job"
    bl_label = "Export Job File"
    bl_description = "Write the model's Run settings as a job file, to run headless or on a farm"

    model: bpy.props.StringProperty(name="Model", options={"SKIP_SAVE"})
    filepath: bpy.props.StringProperty(name="Job file", subtype="FILE_PATH",
                                       options={"SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(default="*.json", options={"HIDDEN"})

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = f"{self.model or 'runway'}.job.json"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        name = self.model
        if not name:
            card = directory.selected_card(context.window_manager.runway_directory)
            name = card.name if card else ""
        return write_job(self, lambda: export_job(context, name))
