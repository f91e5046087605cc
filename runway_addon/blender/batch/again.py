"""A result run again from its provenance (the ``runway`` record stored on it): the job
that made it, queued again or written as a job file."""
from __future__ import annotations

import json

import bpy

from ...core import jobfile
from ...core.errors import RunwayError
from ...core.jobs import JobState
from .. import engine, outputs, sessions
from ..reports import report_error
from .export import write_job
from .resolve import check, resolve_model, targets_of


# The job-file keys of each recorded input source (provenance records more: the camera).
_SOURCE_KEYS = {"render": (), "pass": ("pass",), "image": ("image",), "texture": (),
                "strip": ("strip",), "text": ("text",), "file": ("path",), "value": ("value",)}
TARGET_OF_KIND = {"image": "IMAGE_EDITOR", "text": "TEXT", "strip": "STRIP", "object": "OBJECTS"}
# The kinds of result the operators here take (EnumProperty items).
RESULT_KINDS = (("image", "Image", ""), ("text", "Text", ""), ("strip", "Strip", ""),
                ("object", "Object", ""))


def job_from_provenance(record: dict, target: str) -> dict:
    """The job that made a result, from the ``runway`` record stored on it: same model,
    runtime, command, options, input sources and frame, the output to ``target``."""
    try:
        inputs = {}
        for name, src in (record.get("inputs") or {}).items():
            kind = src.get("source", "value")
            inputs[name] = {"source": kind, **{k: src[k] for k in _SOURCE_KEYS.get(kind, ())
                                               if k in src}}
        runtime = record.get("runtime") or None
        data = {"version": 1, "model": {"catalog": record["model"]},
                "runtime": runtime, "options": dict(record.get("options") or {}),
                "inputs": inputs, "outputs": {record["output"]: [{"target": target}]},
                "frames": str(int(record.get("frame") or 1))}
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise jobfile.JobFileError(f"the result's record is incomplete ({e})",
                                   hint="Only results made by this extension can run again.")
    jobfile.parse(data, "the result's record")
    return data


def record_of(owner) -> dict:
    raw = owner.get(outputs.PROP) if owner is not None else None
    if not raw:
        raise RunwayError(f"{getattr(owner, 'name', 'this')} was not made by a model",
                          hint="Pick a result of a run (it holds a 'runway' record).")
    try:
        return json.loads(raw)
    except ValueError as e:
        raise RunwayError(f"the 'runway' record of {owner.name!r} is not JSON: {e}") from e


def run_again(context, owner, kind: str):
    """Queue the run that made ``owner`` again (non-blocking; the Run path)."""
    job = jobfile.parse(job_from_provenance(record_of(owner), TARGET_OF_KIND[kind]))
    model, spec, card = resolve_model(job.model)
    command = spec.command(job.command)
    check(context, job, spec, command)
    from .. import inputs as blender_inputs
    return engine.get().submit_run(
        context, model, command, blender_inputs.from_job(job.inputs), job.options,
        targets_of(job), sessions.placement(job.runtime or ""),
        label=card.title if card else model.name, status_key=model.name)


def result_owner(context, kind: str, name: str):
    if kind == "image":
        return bpy.data.images.get(name)
    if kind == "text":
        return bpy.data.texts.get(name)
    if kind == "object":
        return bpy.data.objects.get(name)
    if kind == "strip":
        ed = context.scene.sequence_editor
        strips = (ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all) if ed \
            else []
        return next((s for s in strips if s.name == name), None)
    return None


class RUNWAY_OT_run_again(bpy.types.Operator):
    bl_idname = "runway.run_again"
    bl_label = "Run Again"
    bl_description = ("Run the model that made this result again, with the same settings and "
                      "input sources (a new, numbered result)")

    kind: bpy.props.EnumProperty(items=RESULT_KINDS, options={"SKIP_SAVE"})
    name: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        try:
            handle = run_again(context, result_owner(context, self.kind, self.name),
                               self.kind)
        except RunwayError as e:
            return report_error(self, e)
        if bpy.app.background:  # scripts: wait, as the Run operator does
            engine.get().wait([handle])
            if handle.state is not JobState.DONE:
                err = handle.failure
                self.report({"ERROR"}, err.message if err else handle.state.value)
                return {"CANCELLED"}
        return {"FINISHED"}


class RUNWAY_OT_export_result_job(bpy.types.Operator):
    bl_idname = "runway.export_result_job"
    bl_label = "Export Job of This Result"
    bl_description = "Write the job that made this result as a job file"

    kind: bpy.props.EnumProperty(items=RESULT_KINDS, options={"SKIP_SAVE"})
    name: bpy.props.StringProperty(options={"SKIP_SAVE"})
    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})

    def invoke(self, context, event):
        self.filepath = self.filepath or "result.job.json"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        return write_job(self, lambda: job_from_provenance(
            record_of(result_owner(context, self.kind, self.name)), TARGET_OF_KIND[self.kind]))
