"""The Blender driver of the job engine: one JobQueue for the whole Blender session.

- ``submit()`` (main thread) reads the model's settings and inputs from Blender,
  decides where it runs, and hands a Job to the queue; it returns at once.
- In the UI a ``bpy.app.timers`` step drains the queue's events on the main
  thread, keeps each model's status for the panels, and writes finished results
  into Blender through ``outputs`` (the only module that does). Its duration is
  recorded: it must stay short while runs are in flight.
- In background mode (``blender -b``, scripts) timers never fire: ``wait()``
  drains the same queue in a loop, through the same event handler.
- ``shutdown()`` cancels every job and stops every session: at unregister, when
  another file is loaded, and when Blender quits.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import bpy

from ..core.errors import FieldIssue, RunwayError, SpecValidationError
from ..core.jobs import (Done, Failure, Job, JobQueue, JobState, Log, ModelRef, Progress,
                         SessionPool, Status, Warning)
from ..core.validation import validate_value
from . import inputs, outputs, preferences, props, sessions

STEP_BUSY = 0.05  # s between timer steps while runs are in flight
STEP_IDLE = 2.0  # s between steps otherwise (idle sessions are stopped from here)
LOG_LINES = 400


@dataclass
class ModelStatus:
    """What the Run panel shows for one model (plain values, main thread)."""

    state: str = ""  # the latest job state, e.g. "running"
    message: str = ""
    progress: Optional[float] = None
    error: Optional[Failure] = None
    warnings: list = field(default_factory=list)
    applied: list = field(default_factory=list)  # outputs.Applied of the last run
    runs: int = 0
    predict_seconds: float = 0.0  # the server's predict time (Replicate: billed seconds)
    last_predict: Optional[float] = None
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LOG_LINES))
    active: set = field(default_factory=set)  # job ids not finished


@dataclass
class Run:
    """A submitted run and what to do with its results."""

    job: Job
    model: str
    targets: dict
    fields: dict
    info: Any  # outputs.RunInfo
    handle: Any = None
    overlay_input: Optional[str] = None  # the image input that structured outputs refer to


class Engine:
    def __init__(self):
        prefs = preferences.get_preferences()
        idle = prefs.idle_minutes * 60.0 if prefs else 900.0
        self.queue = JobQueue(SessionPool(idle_timeout=idle), workers=2)
        self.runs: dict[str, Run] = {}
        self.status: dict[str, ModelStatus] = collections.defaultdict(ModelStatus)
        self.step_seconds: collections.deque = collections.deque(maxlen=2000)
        # callables(done_event, run), told of each run's end once its results are written
        # (main thread): operators, job files and post-processing waiting for their runs.
        self.listeners: list = []
        # Work another thread hands to the main thread (a GUI render's handlers do).
        self._soon: collections.deque = collections.deque()

    # ------------------------------------------------------------ submit

    def submit(self, context, model_name: str, *, runtime: str = "",
               start_only: bool = False):
        """Read the model's settings and inputs (main thread) and queue a run.
        Raises RunwayError (e.g. SpecValidationError naming the field) before
        anything is queued."""
        mp = props.model(model_name)
        if mp is None or mp.cls is None:
            raise RunwayError(f"model {model_name!r} cannot run here: "
                              f"{mp.error if mp else 'it is not in the catalog'}",
                              hint="Refresh the Model Directory.")
        s = props.settings(context.scene, model_name)
        options = props.options_of(mp, s)
        _validate(mp.spec.options, options, "option")
        where = runtime or (s.run_on if s.run_on != "DEFAULT" else "")
        model = ModelRef.from_card(mp.card)
        placement = sessions.placement(where, model_kind=model.kind)
        if start_only:
            job = Job(model, options=options, placement=placement, label=mp.card.title,
                      start_only=True)
            return self._queue(Run(job, model_name, {}, {}, None))
        fields = {f.name: f for f in mp.command.outputs}
        targets = {name: _targets_of(s, f) for name, f in fields.items()}
        version = mp.card.versions[0].version if mp.card.versions else ""
        return self.submit_run(context, model, mp.command, inputs.from_settings(mp, s),
                               options, targets, placement, label=mp.card.title,
                               version=version, status_key=model_name)

    def submit_run(self, context, model: ModelRef, command, sources: dict, options: dict,
                   targets: dict, placement, *, label: str = "", version: str = "",
                   status_key: str = "", scratch: Optional[list] = None):
        """Queue one run of ``command``: the inputs read from Blender as ``sources``
        say (main thread), each output to its ``targets``. The Run panel and job
        files both come through here. ``scratch``: temporary folders the run owns
        (removed when it ends, or now if it cannot be queued)."""
        gathered = inputs.gather(context, command, sources)
        gathered.scratch.extend(scratch or [])
        try:
            return self._submit_gathered(context, model, command, gathered, options, targets,
                                         placement, label, version, status_key)
        except BaseException:
            gathered.discard()
            raise

    def _submit_gathered(self, context, model, command, gathered, options, targets, placement,
                         label, version, status_key):
        _validate(command.inputs, {k: v for k, v in gathered.values.items()
                                   if not hasattr(v, "resolve")}, "input")
        fields = {f.name: f for f in command.outputs}
        unknown = sorted(set(targets) - set(fields))
        if unknown:
            raise RunwayError(f"the model has no output {unknown[0]!r}",
                              hint=f"Its outputs: {', '.join(fields) or 'none'}.")
        wanted = [n for n, t in targets.items() if t]
        scene = context.scene
        info = outputs.RunInfo(
            model=model.name, version=version, runtime=placement.runtime, command=command.name,
            options=options, inputs=gathered.sources, time=time.time(),
            frame=scene.frame_current, scene=scene.name, camera=gathered.camera)
        job = Job(model, gathered.values, options, command=command.name, placement=placement,
                  label=label or model.name, outputs=wanted, scratch=gathered.scratch,
                  prepare=lambda values: outputs.prepare(values, fields))
        handle = self._queue(Run(job, status_key or model.name, targets, fields, info,
                                 overlay_input=gathered.overlay_input))
        from . import directory
        directory.record_use(status_key or model.name)  # the directory's "Recently used"
        return handle

    def _queue(self, run: Run):
        status = self.status[run.model]
        status.error, status.warnings = None, []
        run.handle = self.queue.submit(run.job)
        self.runs[run.job.id] = run
        status.active.add(run.job.id)
        ensure_timer()
        return run.handle

    # ------------------------------------------------------------ drive

    def step(self) -> float:
        """One timer step: drain events, apply finished results. Main thread."""
        t0 = time.perf_counter()
        events = self.queue.poll()
        for event in events:
            self.handle(event)
        while self._soon:
            self._soon.popleft()()
        if events:
            _redraw()
        self.step_seconds.append(time.perf_counter() - t0)
        return STEP_BUSY if self.busy() else STEP_IDLE

    def call_soon(self, fn) -> None:
        """Run ``fn`` on the main thread at the next timer step (from any thread)."""
        self._soon.append(fn)

    def busy(self) -> bool:
        return any(s.active for s in self.status.values())

    def wait(self, handles, timeout: Optional[float] = None) -> None:
        """Background mode and scripts: drain until ``handles`` are finished."""
        self.queue.drain_until(list(handles), self.handle, timeout)

    def handle(self, event) -> None:
        run = self.runs.get(event.job_id)
        if run is None:
            return
        status = self.status[run.model]
        if isinstance(event, Status):
            status.state, status.message = event.state.value, event.message
            if event.state is JobState.RUNNING:
                status.progress = None
        elif isinstance(event, Progress):
            status.message, status.progress = event.message, event.fraction
            status.log.append(event.message)
        elif isinstance(event, Log):
            status.log.append(event.line)
        elif isinstance(event, Warning):
            status.warnings.append(event.message)
            status.log.append("warning: " + event.message)
            _print(f"{run.model}: warning: {event.message}")
        elif isinstance(event, Failure):
            status.error = event
            status.log.append(f"error: {event.message} {event.hint}".strip())
            _print(f"{run.model}: {event.message}" + (f" ({event.hint})" if event.hint else ""))
        elif isinstance(event, Done):
            status.active.discard(event.job_id)
            status.progress = None
            if event.state is JobState.DONE and event.result is not None and run.info:
                self._apply(run, status, event.result)
            elif event.state is JobState.CANCELLED:
                status.message = f"{run.job.label}: cancelled"
            for listener in list(self.listeners):
                listener(event, run)
            self.runs.pop(event.job_id, None)

    def _apply(self, run: Run, status: ModelStatus, result) -> None:
        info = run.info
        info.run_id = result.run_id or run.job.id
        info.predict_time = result.metrics.get("predict_time")
        overlay = run.overlay_input
        info.input_image = result.inputs.get(overlay) if overlay else None
        status.runs += 1
        if info.predict_time:
            status.predict_seconds += info.predict_time
            status.last_predict = info.predict_time
        try:
            status.applied = outputs.apply(result.outputs, run.fields, run.targets, info)
        except RunwayError as e:  # some targets failed: the others were still written
            status.applied = list(getattr(e, "applied", [])) + list(getattr(e, "failures", []))
            status.error = Failure.of(run.job.id, e)
            _print(f"{run.model}: {e}")
        info.input_image = None  # the run's pixels are not kept past this point

    # ------------------------------------------------------------ sessions

    def cancel(self, model_name: str = "") -> int:
        n = 0
        for run in list(self.runs.values()):
            if not model_name or run.model == model_name:
                run.handle.cancel()
                n += 1
        return n

    def session_of(self, model_name: str):
        mp = props.model(model_name)
        if mp is None or not mp.card.folder:
            return None
        return self.queue.pool.find(ModelRef.from_card(mp.card))

    def stop(self, model_name: str) -> bool:
        mp = props.model(model_name)
        self.cancel(model_name)
        return bool(mp and self.queue.pool.stop(ModelRef.from_card(mp.card)))

    def shutdown(self, timeout: float = 30.0) -> None:
        self.queue.shutdown(timeout)
        # Drain what is left so every run's listeners hear its end.
        for event in self.queue.poll():
            self.handle(event)


def _validate(fields, values: dict, what: str) -> None:
    issues: list[FieldIssue] = []
    by_name = {f.name: f for f in fields}
    for name, value in values.items():
        if name in by_name:
            issues.extend(validate_value(by_name[name], value, name))
    if issues:
        raise SpecValidationError(issues, hint=f"Fix the {what} named above in the Run panel.")


def _targets_of(s, f) -> list:
    chosen = getattr(s, props.prop_id("out", f.name, "targets"))
    common = dict(replace=getattr(s, props.prop_id("out", f.name, "replace")),
                  path=getattr(s, props.prop_id("out", f.name, "path")),
                  file_format=getattr(s, props.prop_id("out", f.name, "format")),
                  socket=getattr(s, props.prop_id("out", f.name, "socket")))
    return [outputs.Target(target=t, **common) for t in sorted(chosen) if t != "NONE"]


def _print(message: str) -> None:
    print(f"Runway: {message}", flush=True)


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "IMAGE_EDITOR", "SEQUENCE_EDITOR", "NODE_EDITOR",
                             "STATUSBAR"):
                area.tag_redraw()


# ------------------------------------------------------------ the one engine

_state: dict = {"engine": None, "exit_hook": False}
_lock = threading.Lock()


def get() -> Engine:
    with _lock:
        if _state["engine"] is None:
            _state["engine"] = Engine()
            _register_exit_hook()
        return _state["engine"]


def current() -> Optional[Engine]:
    return _state["engine"]


def on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _timer_step():
    engine = current()
    if engine is None:
        return STEP_IDLE  # stays registered: a render thread cannot register timers
    return engine.step()


def ensure_timer() -> None:
    """The UI driver's timer, registered from the main thread only (a GUI render's
    handlers run on the render thread; the timer registered at start-up serves
    them)."""
    if bpy.app.background or not on_main_thread():
        return  # timers never fire in background mode: wait() drains
    if not bpy.app.timers.is_registered(_timer_step):
        bpy.app.timers.register(_timer_step, first_interval=STEP_BUSY, persistent=True)


def shutdown() -> None:
    """Cancel every run, stop every session (unregister, file load, exit)."""
    engine = current()
    if engine is not None:
        engine.shutdown()
    _state["engine"] = None


def _stop_timer() -> None:
    if bpy.app.timers.is_registered(_timer_step):
        bpy.app.timers.unregister(_timer_step)


def _at_exit() -> None:
    engine = current()
    if engine is not None:
        engine.queue.shutdown(timeout=15)


def _register_exit_hook() -> None:
    """Stop sessions when Blender quits. threading's own exit hook runs before the
    interpreter waits for threads (so a busy worker cannot delay the stop); plain
    atexit would run only after that wait."""
    if _state["exit_hook"]:
        return
    _state["exit_hook"] = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_at_exit)
            return
        except RuntimeError:  # interpreter already shutting down
            return
    import atexit
    atexit.register(_at_exit)


@bpy.app.handlers.persistent
def _on_load_pre(*_args):
    # Another file replaces this one: its models and runs end with it.
    shutdown()


def register() -> None:
    bpy.app.handlers.load_pre.append(_on_load_pre)
    ensure_timer()


def unregister() -> None:
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    shutdown()
    _stop_timer()
