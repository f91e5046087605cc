"""Your own models: add one from a folder, a Docker image, a server URL or
Replicate (its card filled in from the source), edit its card, remove it."""
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from ...core import catalog as core_catalog
from ...core.errors import RunwayError
from ..reports import report_error
from .listing import (TASK_WORDS, active_workspace, card_named, get_catalog, reload_catalog,
                      reset_filters, select_model, selected_card, workspace_store)


ADD_KINDS = (("FOLDER", "Model folder", "A Cog predictor folder (cog.yaml and predict.py)"),
             ("IMAGE", "Docker image", "A Cog model's Docker image on this computer, or one "
                                       "Docker can pull (runs in Docker)"),
             ("URL", "Model server URL", "A running Cog or Runway Model SDK server"),
             ("REPLICATE", "Replicate model", "owner/name[:version] on Replicate (needs a "
                                               "Replicate endpoint's token)"))
EDIT_TASKS = (("SOURCE", "From the source", "Guess from the model's inputs and outputs"),
              *((t, t.capitalize(), TASK_WORDS[t]) for t in core_catalog.TASKS))


class RUNWAY_OT_model_add(bpy.types.Operator):
    bl_idname = "runway.model_add"
    bl_label = "Add Your Model"
    bl_description = ("Add a model that is not in the directory: a model folder, a Docker "
                      "image, a running model server or a Replicate model; its card is filled "
                      "in from the source and you can edit it")
    bl_options = {"INTERNAL"}

    kind: EnumProperty(name="From", items=ADD_KINDS, default="FOLDER")
    folder: StringProperty(name="Folder", subtype="DIR_PATH", options={"SKIP_SAVE"})
    image: StringProperty(name="Image", options={"SKIP_SAVE"},
                          description="For example runway-for-blender/upscale:latest "
                                      "(docker images lists those on this computer)")
    url: StringProperty(name="URL", options={"SKIP_SAVE"},
                        description="For example http://127.0.0.1:5000")
    replicate: StringProperty(name="Model", options={"SKIP_SAVE"},
                              description="owner/name or owner/name:version")
    title: StringProperty(name="Title", description="Empty: from the source",
                          options={"SKIP_SAVE"})
    short_title: StringProperty(name="Short title", description="For the list (24 "
                                "characters show at the default width)", options={"SKIP_SAVE"})
    task: EnumProperty(name="Task", items=EDIT_TASKS, default="SOURCE")
    overview: StringProperty(name="Overview", description="Empty: from the source",
                             options={"SKIP_SAVE"})
    keywords: StringProperty(name="Keywords", description="Comma-separated",
                             options={"SKIP_SAVE"})

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self, width=420)

    def draw(self, context):
        col = self.layout.column()
        col.use_property_split = True
        col.prop(self, "kind")
        col.prop(self, {"FOLDER": "folder", "IMAGE": "image", "URL": "url",
                        "REPLICATE": "replicate"}[self.kind])
        col.separator()
        col.label(text="The card (empty fields come from the source):")
        for prop in ("title", "short_title", "task", "overview", "keywords"):
            col.prop(self, prop)

    def execute(self, context):
        from .. import preferences
        from ...core import user_models
        try:
            if self.kind == "FOLDER":
                if not self.folder.strip():
                    raise user_models.UserModelError("Choose the model's folder.")
                from ..sessions import runtime_dirs
                card, spec = user_models.card_from_folder(
                    bpy.path.abspath(self.folder), env_root=runtime_dirs()["env_root"])
            elif self.kind == "IMAGE":
                prefs = preferences.get_preferences(context)
                card, spec = user_models.card_from_image(
                    self.image, docker_host=(prefs.docker_host.strip() if prefs else "") or None)
            elif self.kind == "URL":
                card, spec = user_models.card_from_url(self.url)
            else:
                card, spec = user_models.card_from_replicate(self.replicate,
                                                             token=preferences.replicate_token())
            edits = card_edits(self)
            card.update(edits)
            path = user_models.save_user_card(
                preferences.user_models_folder(), card, spec,
                taken={c.name for c in get_catalog().cards})
        except (RunwayError, OSError, ValueError) as e:
            return report_error(self, e)
        cat = reload_catalog(context)
        name = path.parent.name
        d = context.window_manager.runway_directory
        reset_filters(d)
        ws = active_workspace(context)
        if ws is not None:
            workspace_store().add_model(ws.id, name)
        select_model(d, name)
        broken = [e for e in cat.errors if e.path == str(path)]
        if broken:
            return report_error(self, broken[0])
        self.report({"INFO"}, f"Added {cat.get(name).title}" + (f" to {ws.name}" if ws else ""))
        return {"FINISHED"}


def card_edits(op) -> dict:
    """The card fields an operator's properties set (empty ones leave the source's)."""
    edits = {}
    if op.title.strip():
        edits["title"] = op.title.strip()
    if op.short_title.strip():
        edits["short_title"] = op.short_title.strip()[:40]
    if op.task != "SOURCE":
        edits["task"] = op.task
    if op.overview.strip():
        edits["overview"] = op.overview.strip()
    if op.keywords.strip():
        edits["keywords"] = [k.strip() for k in op.keywords.split(",") if k.strip()]
    return edits


class _OnUserModel:
    """An operator on the card of a model you added (``model``, else the selected
    one) that changes it (``change``), then reads the cards again."""

    bl_options = {"INTERNAL"}

    model: StringProperty(name="Model", description="Empty: the selected model",
                          options={"SKIP_SAVE"})

    def user_card(self, context):
        """The card, or None with an ERROR report (not a model you added)."""
        card = (card_named(self.model) if self.model
                else selected_card(context.window_manager.runway_directory))
        if card is None or not card.is_user_model:
            self.report({"ERROR"}, self.refused)
            return None
        return card

    def execute(self, context):
        card = self.user_card(context)
        if card is None:
            return {"CANCELLED"}
        try:
            self.change(card)
        except (RunwayError, OSError, ValueError) as e:
            return report_error(self, e)
        reload_catalog(context)
        return {"FINISHED"}


class RUNWAY_OT_model_edit(_OnUserModel, bpy.types.Operator):
    bl_idname = "runway.model_edit"
    bl_label = "Edit Model Card"
    bl_description = "Edit the card of a model you added"
    refused = "Only the cards of models you added can be edited"

    title: StringProperty(name="Title", options={"SKIP_SAVE"})
    short_title: StringProperty(name="Short title", options={"SKIP_SAVE"})
    task: EnumProperty(name="Task", items=EDIT_TASKS, default="SOURCE")
    overview: StringProperty(name="Overview", options={"SKIP_SAVE"})
    keywords: StringProperty(name="Keywords", description="Comma-separated",
                             options={"SKIP_SAVE"})

    def invoke(self, context, event):
        card = self.user_card(context)
        if card is None:
            return {"CANCELLED"}
        self.model = card.name
        self.title, self.short_title = card.title, card.short_title or ""
        self.task, self.overview = card.task, card.overview
        self.keywords = ", ".join(card.keywords)
        return context.window_manager.invoke_props_dialog(self, width=420)

    def change(self, card):
        from ...core import user_models
        user_models.edit_user_card(f"{card.card_dir}/card.json", **card_edits(self))


class RUNWAY_OT_model_remove(_OnUserModel, bpy.types.Operator):
    bl_idname = "runway.model_remove"
    bl_label = "Remove Your Model"
    bl_description = "Forget a model you added (its card; never the model's own folder)"
    refused = "Only models you added can be removed"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def change(self, card):
        from ...core import user_models
        user_models.remove_user_card(str(Path(card.card_dir).parent), card.name)
