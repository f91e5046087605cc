"""Workspaces in the Model Directory: the menu that picks one (per .blend) and the
operators that create, rename and delete them and add, remove and move models."""
import bpy
from bpy.props import IntProperty, StringProperty

from ...core.errors import RunwayError
from ..reports import report_error
from .listing import _match_cache, active_workspace, selected_card, workspace_store


class RUNWAY_MT_workspaces(bpy.types.Menu):
    bl_idname = "RUNWAY_MT_workspaces"
    bl_label = "Workspaces"
    bl_description = "Show all models, or the models of one workspace (remembered per .blend)"

    def draw(self, context):
        layout = self.layout
        current = getattr(context.scene, "runway_workspace", "")
        layout.operator(RUNWAY_OT_workspace_set.bl_idname, text="All models",
                        icon="CHECKBOX_HLT" if not current else "BLANK1").workspace = ""
        for ws in workspace_store().load():
            layout.operator(RUNWAY_OT_workspace_set.bl_idname,
                            text=f"{ws.name}  ({len(ws.models)})",
                            icon="CHECKBOX_HLT" if ws.id == current else "BLANK1"
                            ).workspace = ws.id
        layout.separator()
        layout.operator(RUNWAY_OT_workspace_new.bl_idname, icon="ADD")
        if current:
            layout.operator(RUNWAY_OT_workspace_rename.bl_idname, icon="GREASEPENCIL")
            layout.operator(RUNWAY_OT_workspace_delete.bl_idname, icon="TRASH")


class RUNWAY_OT_workspace_set(bpy.types.Operator):
    bl_idname = "runway.workspace_set"
    bl_label = "Show Workspace"
    bl_description = "Show only this workspace's models (this .blend remembers it)"
    bl_options = {"INTERNAL"}

    workspace: StringProperty(name="Workspace id", description="Empty: all models")

    def execute(self, context):
        if self.workspace and workspace_store().get(self.workspace) is None:
            self.report({"ERROR"}, "That workspace no longer exists")
            return {"CANCELLED"}
        context.scene.runway_workspace = self.workspace
        _match_cache["key"] = None
        return {"FINISHED"}


class _WorkspaceOp:
    """An operator that changes the workspaces (in ``change``): what the store
    refuses, or cannot write, is reported in words."""

    bl_options = {"INTERNAL"}

    def execute(self, context):
        try:
            self.change(context, workspace_store())
        except (RunwayError, OSError) as e:
            return report_error(self, e)
        return {"FINISHED"}


class RUNWAY_OT_workspace_new(_WorkspaceOp, bpy.types.Operator):
    bl_idname = "runway.workspace_new"
    bl_label = "New Workspace"
    bl_description = "A new workspace (with the selected model, if one is shown)"

    name: StringProperty(name="Name", default="My Workspace", options={"SKIP_SAVE"})
    add_selected: bpy.props.BoolProperty(name="Add the selected model", default=True)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def change(self, context, store):
        card = selected_card(context.window_manager.runway_directory)
        models = [card.name] if (card is not None and self.add_selected) else []
        ws = store.create(self.name, models)
        context.scene.runway_workspace = ws.id
        self.report({"INFO"}, f"Workspace {ws.name} created")


class _OnActiveWorkspace(_WorkspaceOp):
    @classmethod
    def poll(cls, context):
        return bool(getattr(context.scene, "runway_workspace", ""))


class RUNWAY_OT_workspace_rename(_OnActiveWorkspace, bpy.types.Operator):
    bl_idname = "runway.workspace_rename"
    bl_label = "Rename Workspace"
    bl_description = "Rename the workspace shown"

    name: StringProperty(name="Name", options={"SKIP_SAVE"})

    def invoke(self, context, event):
        ws = active_workspace(context)
        self.name = ws.name if ws else ""
        return context.window_manager.invoke_props_dialog(self)

    def change(self, context, store):
        store.rename(context.scene.runway_workspace, self.name)


class RUNWAY_OT_workspace_delete(_OnActiveWorkspace, bpy.types.Operator):
    bl_idname = "runway.workspace_delete"
    bl_label = "Delete Workspace"
    bl_description = "Delete the workspace shown (its models stay in the directory)"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def change(self, context, store):
        store.delete(context.scene.runway_workspace)
        context.scene.runway_workspace = ""


class _WorkspaceModelOp(_OnActiveWorkspace):
    """Adds, removes or moves a model (``model``, else the selected one) in the
    workspace shown (``change_model``)."""

    model: StringProperty(name="Model", description="Empty: the selected model",
                          options={"SKIP_SAVE"})

    def model_name(self, context):
        if self.model:
            return self.model
        card = selected_card(context.window_manager.runway_directory, follow_list=False)
        return card.name if card is not None else ""

    def execute(self, context):
        if not self.model_name(context):
            self.report({"ERROR"}, "No model selected")
            return {"CANCELLED"}
        return super().execute(context)

    def change(self, context, store):
        self.change_model(store, context.scene.runway_workspace, self.model_name(context))


class RUNWAY_OT_workspace_add_model(_WorkspaceModelOp, bpy.types.Operator):
    bl_idname = "runway.workspace_add_model"
    bl_label = "Add to Workspace"
    bl_description = "Add the selected model to the workspace shown"

    def change_model(self, store, wid, name):
        store.add_model(wid, name)


class RUNWAY_OT_workspace_remove_model(_WorkspaceModelOp, bpy.types.Operator):
    bl_idname = "runway.workspace_remove_model"
    bl_label = "Remove from Workspace"
    bl_description = "Take the selected model out of the workspace shown (it stays in the "\
                     "directory)"

    def change_model(self, store, wid, name):
        store.remove_model(wid, name)


class RUNWAY_OT_workspace_move_model(_WorkspaceModelOp, bpy.types.Operator):
    bl_idname = "runway.workspace_move_model"
    bl_label = "Move in Workspace"
    bl_description = "Move the selected model up or down in the workspace's order"

    offset: IntProperty(name="Offset", default=-1)

    def change_model(self, store, wid, name):
        store.move_model(wid, name, self.offset)
