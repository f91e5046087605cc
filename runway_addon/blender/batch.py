"""Job files run headless: ``bpy.ops.runway.run_job(filepath=...)``, the ``runway``
command line (``blender -c runway run-job ...``) and the farm templates.

A job file (core.jobfile) names a model, its inputs by source and its outputs by
target, and a frame range. Each frame goes through the same engine as the Run
button (``Engine.submit_run``): the main thread sets the frame and reads the
inputs (rendering when an input is a render), the worker runs the model, and
results are written into Blender as they finish, so the model works on frame N
while Blender renders frame N+1. Every step is logged as one JSON line.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import bpy

from ..core import catalog as core_catalog
from ..core import jobfile
from ..core.errors import RunwayError
from ..core.jobs import Done, Failure, JobState, ModelRef, Status
from ..core.validation import validate_value
from . import directory, engine, outputs, sessions
from .reports import report_error


@dataclass
class BatchReport:
    frames: list = field(default_factory=list)
    done: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)  # frame -> message
    cancelled: list = field(default_factory=list)
    written: list = field(default_factory=list)  # (frame, output, target, name)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.cancelled and len(self.done) == len(self.frames)

    def summary(self) -> str:
        text = f"{len(self.done)}/{len(self.frames)} frames done in {self.seconds:.1f} s"
        if self.failed:
            first = min(self.failed)
            text += f"; {len(self.failed)} failed (frame {first}: {self.failed[first]})"
        if self.cancelled:
            text += f"; {len(self.cancelled)} not run"
        return text


class JsonLog:
    """One JSON object per line: what happened, when (s since the start)."""

    def __init__(self, path: str = ""):
        self.t0 = time.monotonic()
        self._f = open(path, "a", encoding="utf-8") if path else None

    def __call__(self, event: str, **fields) -> None:
        record = {"t": round(time.monotonic() - self.t0, 3), "event": event, **fields}
        line = json.dumps(record, default=str)
        if self._f is not None:
            self._f.write(line + "\n")
            self._f.flush()
        print(f"Runway: {line}", flush=True)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def resolve_model(source: jobfile.ModelSource):
    """(ModelRef, spec, card or None) for a job file's model."""
    if source.catalog:
        cat = directory.get_catalog()
        try:
            card = cat.get(source.catalog)
        except (KeyError, RunwayError):
            raise jobfile.JobFileError(f"model.catalog: no model {source.catalog!r} in the "
                                       "catalog", field="model.catalog",
                                       hint=f"Known: {', '.join(c.name for c in cat.cards)}.")
        return ModelRef.from_card(card), core_catalog.load_spec(card), card
    if source.folder:
        folder = Path(bpy.path.abspath(source.folder)).resolve()
        spec = core_catalog.load_folder_spec(folder)
        return ModelRef("folder", str(folder)), spec, None
    raise jobfile.JobFileError(
        f"model.{source.kind}: job files run catalog models and model folders so far",
        field=f"model.{source.kind}",
        hint="Use the model's folder, or run it from the Run panel.")


def targets_of(job: jobfile.JobFile) -> dict:
    return {name: [outputs.Target(target=t.target, name=t.name, replace=t.replace, path=t.path,
                                  file_format=t.format, socket=t.socket) for t in ts]
            for name, ts in job.outputs.items()}


def check(context, job: jobfile.JobFile, spec, command) -> None:
    """What can be known wrong before anything starts, as JobFileError naming the field:
    inputs and outputs the model does not have, targets an output cannot go to,
    options and literal values the spec refuses, a render without a camera, a save
    in place of a .blend never saved."""
    fields_in = {f.name: f for f in command.inputs}
    fields_out = {f.name: f for f in command.outputs}
    known_options = {f.name: f for f in spec.options}

    def no_such(section: str, what: str, name: str, known: dict):
        return jobfile.JobFileError(
            f"{section}.{name}: the model has no {what} {name!r}", field=f"{section}.{name}",
            hint=f"Its {what}s: {', '.join(known) or 'none'}.")

    for name, src in job.inputs.items():
        f = fields_in.get(name)
        if f is None:
            raise no_such("inputs", "input", name, fields_in)
        if f.type == "image" and src.source in ("text", "value"):
            raise jobfile.JobFileError(
                f"inputs.{name}: an image cannot come from {src.source!r}",
                field=f"inputs.{name}.source",
                hint="Use render, pass, image, texture, strip or file.")
        if f.type != "image" and src.source not in ("text", "file", "value"):
            raise jobfile.JobFileError(
                f"inputs.{name}: a {f.type} input cannot come from {src.source!r}",
                field=f"inputs.{name}.source", hint="Use value, text or file.")
        if src.source == "value":
            issues = validate_value(f, src.value, name)
            if issues:
                raise jobfile.JobFileError(f"inputs.{name}: {issues[0].message}",
                                           field=f"inputs.{name}.value")
    for name, value in job.options.items():
        if name not in known_options:
            raise no_such("options", "option", name, known_options)
        issues = validate_value(known_options[name], value, name)
        if issues:
            raise jobfile.JobFileError(f"options.{name}: {issues[0].message}",
                                       field=f"options.{name}")
    for name, targets in job.outputs.items():
        f = fields_out.get(name)
        if f is None:
            raise no_such("outputs", "output", name, fields_out)
        allowed = [t for t in outputs.targets_for(f) if t != "NONE"]
        for i, t in enumerate(targets):
            if t.target not in allowed:
                raise jobfile.JobFileError(
                    f"outputs.{name}.{i}.target: {f.name} ({f.type}) cannot go to "
                    f"{t.target}", field=f"outputs.{name}.{i}.target",
                    hint=f"It can go to {', '.join(allowed)}.")
    if any(s.source in ("render", "pass") for s in job.inputs.values()) and \
            context.scene.camera is None:
        raise jobfile.JobFileError("inputs: a render needs a camera, and the scene "
                                   f"{context.scene.name!r} has none", field="inputs",
                                   hint="Add a camera, or make it the scene's camera.")
    if job.save_blend is True and not bpy.data.filepath:
        raise jobfile.JobFileError("save_blend: the .blend has never been saved",
                                   field="save_blend", hint="Give a path to save it to.")


def run_job(context, job: jobfile.JobFile, *, frames: str = "", log: Optional[JsonLog] = None,
            timeout: float = 24 * 3600.0) -> BatchReport:
    """Run ``job`` over its frames (or ``frames``), blocking until every frame is done.
    Raises JobFileError before anything starts when the job cannot run here.

    Frames are pipelined: up to ``replicas + 1`` are in flight, so Blender reads (and
    renders) frame N+1 while the model works on frame N. A failing frame with
    ``on_failure: "stop"`` starts no later frame and cancels the later ones in flight
    (one that had already finished keeps its results); earlier frames finish."""
    log = log or JsonLog()
    report = BatchReport()
    t0 = time.monotonic()
    model, spec, card = resolve_model(job.model)
    try:
        command = spec.command(job.command)
    except KeyError as e:
        raise jobfile.JobFileError(f"command: {e.args[0]}", field="command") from None
    check(context, job, spec, command)
    from . import inputs as blender_inputs
    sources = blender_inputs.from_job(job.inputs)
    targets = targets_of(job)
    scene = context.scene
    try:
        frame_list = jobfile.parse_frames(frames) if frames else \
            job.frame_list(scene.frame_current)
    except ValueError as e:
        raise jobfile.JobFileError(f"frames: {e}", field="frames") from None
    report.frames = frame_list
    order = {f: i for i, f in enumerate(frame_list)}
    base = sessions.placement(job.runtime or "")
    placements = [dataclasses.replace(base, replica=i) for i in range(job.replicas)]
    eng = engine.get()
    # One worker per replica: with one, the model takes the frames in order, one at a
    # time, while the main thread reads (renders) the next one.
    saved_workers = eng.queue.max_workers
    eng.queue.max_workers = job.replicas
    label = card.title if card else model.name
    version = card.versions[0].version if card and card.versions else ""
    log("job", model=model.name, runtime=base.runtime, frames=frame_list,
        replicas=job.replicas, on_failure=job.on_failure)
    by_job: dict = {}  # job id -> frame
    in_flight: dict = {}  # job id -> handle
    stop = {"now": False}

    def fail(frame, message, hint=""):
        if frame in report.failed:
            return
        report.failed[frame] = message
        log("error", frame=frame, message=message, hint=hint)
        if job.on_failure == "stop" and not stop["now"]:
            # Frames after it stop; frames before it (still in flight) may finish.
            stop["now"] = True
            for jid, h in list(in_flight.items()):
                if order[by_job[jid]] > order[frame]:
                    h.cancel()

    def on_event(event):
        # The engine tells its listeners of a run's end only; a job file logs every
        # step, so it sees each event itself (after the engine has handled it).
        frame = by_job.get(event.job_id)
        eng.handle(event)
        if frame is None:
            return
        if isinstance(event, Status) and event.state in (JobState.STARTING, JobState.RUNNING):
            log(event.state.value, frame=frame, message=event.message)
        elif isinstance(event, Failure):
            fail(frame, event.message, event.hint)
        elif isinstance(event, Done):
            in_flight.pop(event.job_id, None)
            status = eng.status[model.name]
            if event.state is JobState.DONE:
                if status.error is not None and status.error.job_id == event.job_id:
                    # Some targets could not be written: the frame failed.
                    for a in status.applied:
                        log("output", frame=frame, output=a.output, target=a.target,
                            name=a.name, ok=a.ok, message="" if a.ok else a.message)
                    fail(frame, status.error.message, status.error.hint)
                    log("frame", frame=frame, state="failed")
                    return
                report.done.append(frame)
                for a in status.applied:
                    report.written.append((frame, a.output, a.target, a.name))
                    log("output", frame=frame, output=a.output, target=a.target, name=a.name,
                        ok=a.ok)
                metrics = event.result.metrics if event.result else {}
                log("frame", frame=frame, state="done",
                    predict_s=metrics.get("predict_time"),
                    run_s=round(event.result.run_seconds, 3) if event.result else None)
            elif event.state is JobState.CANCELLED:
                report.cancelled.append(frame)
                log("frame", frame=frame, state="cancelled")
            else:
                fail(frame, (status.error.message if status.error is not None and
                             status.error.job_id == event.job_id else
                             f"the run ended {event.state.value}"))
                log("frame", frame=frame, state="failed")

    def pump(wait: float) -> None:
        oldest = next(iter(in_flight.values()), None)
        if oldest is not None and wait:
            oldest.finished.wait(wait)
        for event in eng.queue.poll():
            on_event(event)

    depth = job.replicas + 1
    deadline = t0 + timeout
    try:
        for i, frame in enumerate(frame_list):
            pump(0)
            while len(in_flight) >= depth and not stop["now"]:
                pump(0.05)
            if stop["now"]:
                rest = frame_list[i:]
                report.cancelled.extend(rest)
                log("stopped", reason=f"frame {min(report.failed)} failed", not_run=rest)
                break
            scene.frame_set(frame)
            try:
                handle = eng.submit_run(context, model, command, sources, job.options, targets,
                                        placements[i % len(placements)], label=label,
                                        version=version, status_key=model.name)
            except RunwayError as e:
                log("frame", frame=frame, state="failed")
                fail(frame, e.message, e.hint)
                continue
            by_job[handle.id] = frame
            in_flight[handle.id] = handle
            log("submitted", frame=frame)
        while in_flight:
            if time.monotonic() > deadline:
                for h in in_flight.values():
                    h.cancel()
                deadline = float("inf")
            pump(0.05)
        for event in eng.queue.poll():  # what is left (e.g. another run's events)
            on_event(event)
    finally:
        eng.queue.max_workers = saved_workers
        if in_flight:  # interrupted: nothing of this job keeps running
            for h in in_flight.values():
                h.cancel()
    if job.save_blend:
        _save(job.save_blend, log)
    report.seconds = time.monotonic() - t0
    report.failed = dict(sorted(report.failed.items()))
    log("done", ok=report.ok, done=sorted(report.done), failed=sorted(report.failed),
        not_run=sorted(report.cancelled), seconds=round(report.seconds, 3),
        summary=report.summary())
    return report


def _save(save, log) -> None:
    if save is True:
        if not bpy.data.filepath:
            raise jobfile.JobFileError("save_blend: the .blend has never been saved",
                                       field="save_blend", hint="Give a path to save it to.")
        bpy.ops.wm.save_mainfile()
        log("saved", path=bpy.data.filepath)
    else:
        path = bpy.path.abspath(str(save))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=path, copy=True)
        log("saved", path=path)


def export_job(context, model_name: str) -> dict:
    """The Run panel's settings of a model as a job file (what a run by hand did)."""
    from . import inputs as blender_inputs, props
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


# The job-file keys of each recorded input source (provenance records more: the camera).
_SOURCE_KEYS = {"render": (), "pass": ("pass",), "image": ("image",), "texture": (),
                "strip": ("strip",), "text": ("text",), "file": ("path",), "value": ("value",)}
TARGET_OF_KIND = {"image": "IMAGE_EDITOR", "text": "TEXT", "strip": "STRIP", "object": "OBJECTS"}


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
    from . import inputs as blender_inputs
    return engine.get().submit_run(
        context, model, command, blender_inputs.from_job(job.inputs), job.options,
        targets_of(job), sessions.placement(job.runtime or ""),
        label=card.title if card else model.name, status_key=model.name)


# ------------------------------------------------------------------ command line

def cli(argv: list) -> int:
    """``blender -c runway run-job FILE.blend JOB.json [--frames 1-10] [--log LOG.jsonl]``."""
    import argparse
    ap = argparse.ArgumentParser(prog="blender -c runway", description=cli.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run-job", help="run a job file on a .blend")
    r.add_argument("blend")
    r.add_argument("job")
    r.add_argument("--frames", default="")
    r.add_argument("--log", default="")
    sub.add_parser("schema", help="print the job file's JSON Schema")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.cmd == "schema":
        print(json.dumps(jobfile.schema(), indent=2))
        return 0
    log = JsonLog(args.log)
    try:
        try:
            job = jobfile.load(args.job)
            bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.blend))
            report = run_job(bpy.context, job, frames=args.frames, log=log)
        except RunwayError as e:
            log("refused", message=e.message, field=getattr(e, "field", ""), hint=e.hint)
            raise
        finally:
            log.close()
            engine.shutdown()
    except RunwayError as e:
        print(f"Runway: error: {e.message}" + (f" ({e.hint})" if e.hint else ""),
              file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # a one-line reason, not a traceback, is what a farm shows
        print(f"Runway: error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 2
    if not report.ok:
        print(f"Runway: failed: {report.summary()}", file=sys.stderr, flush=True)
        return 1
    return 0


_cli = {"handle": None}


def register() -> None:
    if hasattr(bpy.utils, "register_cli_command"):  # Blender 4.2+
        _cli["handle"] = bpy.utils.register_cli_command("runway", cli)


def unregister() -> None:
    if _cli["handle"] is not None:
        bpy.utils.unregister_cli_command(_cli["handle"])
        _cli["handle"] = None


# ------------------------------------------------------------------ operators

class RUNWAY_OT_run_job(bpy.types.Operator):
    bl_idname = "runway.run_job"
    bl_label = "Run Job File"
    bl_description = ("Run a job file (model, inputs, outputs, frames) on this .blend, "
                      "blocking until every frame is done")

    filepath: bpy.props.StringProperty(name="Job file", subtype="FILE_PATH",
                                       options={"SKIP_SAVE"})
    frames: bpy.props.StringProperty(name="Frames", description="Override the job's frames: "
                                     "1-10, 1-3,5", options={"SKIP_SAVE"})
    log: bpy.props.StringProperty(name="Log", subtype="FILE_PATH", options={"SKIP_SAVE"},
                                  description="Append a JSON line per step to this file")

    def invoke(self, context, event):
        if not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context):
        log = JsonLog(bpy.path.abspath(self.log) if self.log else "")
        try:
            job = jobfile.load(bpy.path.abspath(self.filepath))
            report = run_job(context, job, frames=self.frames, log=log)
        except RunwayError as e:
            log("refused", message=e.message, field=getattr(e, "field", ""), hint=e.hint)
            return report_error(self, e)
        finally:
            log.close()
        if not report.ok:
            self.report({"ERROR"}, f"job failed: {report.summary()}")
            return {"CANCELLED"}
        self.report({"INFO"}, report.summary())
        return {"FINISHED"}


def _write_job(op, make) -> set:
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
        return _write_job(self, lambda: export_job(context, name))


def _result_owner(context, kind: str, name: str):
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


RESULT_KINDS = (("image", "Image", ""), ("text", "Text", ""), ("strip", "Strip", ""),
                ("object", "Object", ""))


class RUNWAY_OT_run_again(bpy.types.Operator):
    bl_idname = "runway.run_again"
    bl_label = "Run Again"
    bl_description = ("Run the model that made this result again, with the same settings and "
                      "input sources (a new, numbered result)")

    kind: bpy.props.EnumProperty(items=RESULT_KINDS, options={"SKIP_SAVE"})
    name: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        try:
            handle = run_again(context, _result_owner(context, self.kind, self.name),
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
        return _write_job(self, lambda: job_from_provenance(
            record_of(_result_owner(context, self.kind, self.name)), TARGET_OF_KIND[self.kind]))


classes = (RUNWAY_OT_run_job, RUNWAY_OT_export_job, RUNWAY_OT_run_again,
           RUNWAY_OT_export_result_job)
