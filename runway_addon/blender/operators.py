"""Operators: the Run panel's buttons, F3 search and scripts call the same ones.

``execute()`` blocks until the run is over (scripts, ``blender -b``, where
timers never fire); ``invoke()`` (a click) queues the run, returns to Blender at
once and follows it modally: Esc cancels it. Both go through the one engine.
Every operator names its model explicitly (``model="style-transfer"``) and says
why it is disabled (``poll_message_set``).
"""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

from ..core.errors import RunwayError
from ..core.jobs import JobState
from . import directory, engine, props
from .reports import report_error
from .preferences import RUNTIMES

RUN_ON = (("MODEL", "Model's setting", "Where the Run panel says this model runs"), *RUNTIMES)


def _model_name(op, context) -> str:
    if op.model:
        return op.model
    card = directory.selected_card(context.window_manager.runway_directory)
    return card.name if card else ""


def _poll_model(cls, context) -> bool:
    if bpy.app.background:
        return True  # scripts name the model; execute() says what is wrong
    card = directory.selected_card(context.window_manager.runway_directory)
    if card is None:
        cls.poll_message_set("Select a model in the Model Directory first")
        return False
    mp = props.model(card.name)
    if mp is None or mp.cls is None:
        cls.poll_message_set(f"{card.title} cannot run here: "
                             f"{mp.error if mp else 'refresh the Model Directory'}")
        return False
    return True


class _ModelOperator:
    model: StringProperty(name="Model", description="The model's name (its card); empty: the "
                                                    "model selected in the Model Directory",
                          options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return _poll_model(cls, context)


class RUNWAY_OT_run(_ModelOperator, bpy.types.Operator):
    bl_idname = "runway.run"
    bl_label = "Run Model"
    bl_description = "Run the model on its inputs; the results go where its outputs say"
    bl_options = {"REGISTER"}

    runtime: EnumProperty(name="Run on", items=RUN_ON, default="MODEL", options={"SKIP_SAVE"})
    accept_licence: BoolProperty(
        name="Accept licence", options={"SKIP_SAVE"},
        description="For scripts: confirm that a model not cleared for commercial use may run")
    timeout: FloatProperty(name="Timeout (s)", default=3600.0, min=1.0, options={"SKIP_SAVE"},
                           description="Blocking runs (scripts): cancel after this long")

    def _licence_ok(self, context, name) -> bool:
        mp = props.model(name)
        if mp is None or mp.card.licence.commercial_use.allowed:
            return True
        s = props.settings(context.scene, name)
        if s is not None and (s.licence_confirmed or self.accept_licence):
            s.licence_confirmed = True
            return True
        return False

    def _submit(self, context):
        name = _model_name(self, context)
        if not name:
            self.report({"ERROR"}, "No model given: select one in the Model Directory or pass "
                                   "model=")
            return None
        try:
            return engine.get().submit(context, name, runtime="" if self.runtime == "MODEL"
                                      else self.runtime)
        except RunwayError as e:
            report_error(self, e)
            return None

    def execute(self, context):
        name = _model_name(self, context)
        if not self._licence_ok(context, name):
            self.report({"ERROR"}, f"{name}: its licence does not clear commercial use; "
                                   "confirm it in the Run panel or pass accept_licence=True")
            return {"CANCELLED"}
        handle = self._submit(context)
        if handle is None:
            return {"CANCELLED"}
        eng = engine.get()
        eng.wait([handle], timeout=self.timeout)
        return self._finished(eng, name, handle)

    def _finished(self, eng, name, handle):
        status = eng.status[name]
        if handle.state is JobState.DONE and status.error is None:
            made = ", ".join(a.name for a in status.applied if a.ok)
            self.report({"INFO"}, f"{name}: done" + (f" ({made})" if made else ""))
            return {"FINISHED"}
        if handle.state is JobState.CANCELLED:
            self.report({"WARNING"}, f"{name}: cancelled")
            return {"CANCELLED"}
        err = status.error or handle.failure
        if err is not None:
            return report_error(self, err, prefix=f"{name}: ")
        return {"CANCELLED"}

    def invoke(self, context, event):
        name = _model_name(self, context)
        if not self._licence_ok(context, name):
            # Asked once per model and .blend: the confirmation is a dialog of its own.
            return bpy.ops.runway.confirm_licence("INVOKE_DEFAULT", model=name)
        self._handle = self._submit(context)
        if self._handle is None:
            return {"CANCELLED"}
        self._name = name
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._handle.cancel()
        if event.type == "TIMER" and self._handle.finished.is_set() and \
                self._handle.id not in engine.get().runs:
            context.window_manager.event_timer_remove(self._timer)
            return self._finished(engine.get(), self._name, self._handle)
        return {"PASS_THROUGH"}


class RUNWAY_OT_confirm_licence(_ModelOperator, bpy.types.Operator):
    bl_idname = "runway.confirm_licence"
    bl_label = "Use Anyway"
    bl_description = ("This model's licence does not clear commercial use: confirm that you may "
                      "use it for this work (asked once per model and .blend)")
    bl_options = {"INTERNAL"}

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        name = _model_name(self, context)
        s = props.settings(context.scene, name)
        if s is None:
            return {"CANCELLED"}
        s.licence_confirmed = True
        self.report({"INFO"}, f"{name}: confirmed; press Run again")
        return {"FINISHED"}


class RUNWAY_OT_cancel(_ModelOperator, bpy.types.Operator):
    bl_idname = "runway.cancel"
    bl_label = "Cancel Run"
    bl_description = "Cancel the model's queued and running runs"

    @classmethod
    def poll(cls, context):
        eng = engine.current()
        if eng is None or not eng.busy():
            cls.poll_message_set("Nothing is running")
            return False
        return True

    def execute(self, context):
        n = engine.get().cancel(self.model)
        self.report({"INFO"}, f"cancelled {n} run(s)")
        return {"FINISHED"}


class RUNWAY_OT_session_start(_ModelOperator, bpy.types.Operator):
    bl_idname = "runway.session_start"
    bl_label = "Start Model"
    bl_description = "Start the model now so that the first run does not wait for it"

    def execute(self, context):
        name = _model_name(self, context)
        try:
            handle = engine.get().submit(context, name, start_only=True)
        except RunwayError as e:
            return report_error(self, e)
        if bpy.app.background:
            engine.get().wait([handle], timeout=3600)
            if handle.state is not JobState.DONE:
                err = handle.failure
                self.report({"ERROR"}, f"{name}: {err.message if err else handle.state.value}")
                return {"CANCELLED"}
        return {"FINISHED"}


class RUNWAY_OT_session_stop(_ModelOperator, bpy.types.Operator):
    bl_idname = "runway.session_stop"
    bl_label = "Stop Model"
    bl_description = "Stop the model's server or container (the next run starts it again)"

    def execute(self, context):
        name = _model_name(self, context)
        stopped = engine.get().stop(name)
        self.report({"INFO"}, f"{name}: stopping" if stopped else f"{name} was not running")
        return {"FINISHED"}


class RUNWAY_OT_stop_all(bpy.types.Operator):
    bl_idname = "runway.stop_all"
    bl_label = "Stop All Models"
    bl_description = "Cancel every run and stop every model this Blender started"

    def execute(self, context):
        eng = engine.current()
        if eng is not None:
            eng.cancel()
            eng.queue.pool.stop_all(wait=bpy.app.background)
        return {"FINISHED"}


class RUNWAY_OT_show_logs(_ModelOperator, bpy.types.Operator):
    bl_idname = "runway.show_logs"
    bl_label = "Show Model Logs"
    bl_description = "Put the model's logs (server output and run messages) in a Text datablock"

    def execute(self, context):
        name = _model_name(self, context)
        eng = engine.get()
        entry = eng.session_of(name)
        server = entry.session.logs() if entry is not None and entry.session else ""
        lines = list(eng.status[name].log)
        text_name = f"Runway log: {name}"
        text = bpy.data.texts.get(text_name) or bpy.data.texts.new(text_name)
        text.from_string("\n".join(["# runs", *lines, "", "# server", server or "(not running)"]))
        shown = False
        for area in context.screen.areas if context.screen else []:
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                shown = True
                break
        self.report({"INFO"}, f"logs in the Text datablock {text_name!r}" +
                    ("" if shown else " (open it in a Text Editor)"))
        return {"FINISHED"}


class RUNWAY_OT_sample_vector(_ModelOperator, bpy.types.Operator):
    bl_idname = "runway.sample_vector"
    bl_label = "Sample"
    bl_description = "Draw this vector from the distribution the model declares"
    bl_options = {"INTERNAL", "UNDO"}

    input: StringProperty(options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        name = _model_name(self, context)
        mp = props.model(name)
        s = props.settings(context.scene, name)
        if mp is None or s is None:
            return {"CANCELLED"}
        props.sample_vectors(mp, s, self.input)
        return {"FINISHED"}


classes = (RUNWAY_OT_run, RUNWAY_OT_confirm_licence, RUNWAY_OT_cancel, RUNWAY_OT_session_start,
           RUNWAY_OT_session_stop, RUNWAY_OT_stop_all, RUNWAY_OT_show_logs,
           RUNWAY_OT_sample_vector)
