"""Running a job file: ``run_job`` (and ``bpy.ops.runway.run_job``), blocking until
every frame is done, with a ``BatchReport`` of what came of it.

Each frame goes through the same engine as the Run button (``Engine.submit_run``): the
main thread sets the frame and reads the inputs (rendering when an input is a render),
the worker runs the model, and results are written into Blender as they finish, so the
model works on frame N while Blender renders frame N+1. Every step is logged as one JSON
line (log.JsonLog).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import bpy

from ...core import jobfile
from ...core.errors import RunwayError
from ...core.jobs import Done, Failure, JobState, Status
from .. import engine, sessions
from ..reports import report_error
from .log import JsonLog
from .resolve import check, resolve_model, targets_of


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
    from .. import inputs as blender_inputs
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
