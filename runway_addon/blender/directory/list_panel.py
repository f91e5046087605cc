"""The Model Directory panel: the workspace menu, the search and filters, the
list of models (its rows and their order) and the buttons below it."""
import bpy
from bpy.props import IntProperty

from ..layout import SidebarPanel, wrapped
from .add_model import RUNWAY_OT_model_add, RUNWAY_OT_model_edit, RUNWAY_OT_model_remove
from .listing import (FILTER_LABELS, TASK_ICONS, TASK_LEGEND, TASK_WORDS, _state,
                      active_workspace, any_filter_set, card_named, get_catalog, matching_names,
                      recent_store, reload_catalog, reset_filters, selected_card,
                      workspace_store)
from .workspaces import (RUNWAY_MT_workspaces, RUNWAY_OT_workspace_add_model,
                         RUNWAY_OT_workspace_move_model, RUNWAY_OT_workspace_remove_model,
                         RUNWAY_OT_workspace_rename, RUNWAY_OT_workspace_set)


class RUNWAY_OT_directory_select(bpy.types.Operator):
    """A list row: the short title, the whole title as its tooltip; a click selects."""

    bl_idname = "runway.directory_select"
    bl_label = "Select Model"
    bl_options = {"INTERNAL"}

    index: IntProperty(options={"SKIP_SAVE"})

    @classmethod
    def description(cls, context, properties):
        d = context.window_manager.runway_directory
        if 0 <= properties.index < len(d.models):
            row = d.models[properties.index]
            card = card_named(row.name)
            if card is not None:
                return f"{card.title}\n{TASK_WORDS.get(card.task, card.task)}"
        return "Show this model's card"

    def execute(self, context):
        context.window_manager.runway_directory.active = self.index
        return {"FINISHED"}


class RUNWAY_UL_models(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname,
                  index):
        op = layout.operator(RUNWAY_OT_directory_select.bl_idname, text=item.title,
                             icon=TASK_ICONS.get(item.task, "QUESTION"), emboss=False,
                             depress=index == data.active)
        op.index = index

    def filter_items(self, context, data, propname):
        rows = getattr(data, propname)
        # The list's own filter field (under the list) adds words to the search.
        extra = (self.filter_name or "").replace("*", " ")
        _state["list_words"] = extra  # what selected_card must also honour
        order = matching_names(data, extra)  # best matches (or workspace order) first
        rank = {name: i for i, name in enumerate(order)}
        flags = [self.bitflag_filter_item if r.name in rank else 0 for r in rows]
        # Sort by relevance or workspace order: position of each row in the new order.
        ranked = sorted(range(len(rows)), key=lambda i: (rank.get(rows[i].name, len(rank)), i))
        neworder = [0] * len(rows)
        for new, old in enumerate(ranked):
            neworder[old] = new
        return flags, neworder


class RUNWAY_OT_directory_reset_filters(bpy.types.Operator):
    bl_idname = "runway.directory_reset_filters"
    bl_label = "Reset Filters"
    bl_description = "Clear the search words and every filter (the workspace stays)"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        reset_filters(context.window_manager.runway_directory)
        return {"FINISHED"}


class RUNWAY_OT_directory_refresh(bpy.types.Operator):
    bl_idname = "runway.directory_refresh"
    bl_label = "Refresh Model Directory"
    bl_description = "Read the model cards again"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        cat = reload_catalog(context)  # the Run panel's widgets follow the cards
        for err in cat.errors:
            self.report({"WARNING"}, str(err))
        self.report({"INFO"}, f"{len(cat.cards)} models"
                    + (f", {len(cat.errors)} broken cards (see the Info log)" if cat.errors
                       else ""))
        return {"FINISHED"}


class RUNWAY_PT_directory(SidebarPanel, bpy.types.Panel):
    bl_label = "Model Directory"

    def draw(self, context):
        d = context.window_manager.runway_directory
        layout = self.layout
        cat = get_catalog()
        if len(d.models) != len(cat.cards):
            layout.operator(RUNWAY_OT_directory_refresh.bl_idname, text="Load Models",
                            icon="FILE_REFRESH")
            return
        store = workspace_store()
        ws = active_workspace(context)
        row = layout.row(align=True)
        row.menu(RUNWAY_MT_workspaces.bl_idname, text=ws.name if ws else "All models",
                 icon="ASSET_MANAGER" if ws else "COLLECTION_NEW")
        if ws:
            row.operator(RUNWAY_OT_workspace_rename.bl_idname, text="", icon="GREASEPENCIL")
        for problem in (store.problem, recent_store().problem):
            if problem:
                wrapped(layout.box(), problem, context)
        if ws:
            layout.prop(d, "workspace_only")
        row = layout.row(align=True)
        row.prop(d, "search", text="", icon="VIEWZOOM")
        row.prop(d, "recent_only", text="", icon="TIME")
        row.prop(d, "show_filters", text="", icon="FILTER")
        row.operator(RUNWAY_OT_directory_refresh.bl_idname, text="", icon="FILE_REFRESH")
        if d.show_filters:
            col = layout.column(align=True)
            col.use_property_split = True
            col.use_property_decorate = False
            col.prop(d, "sort", text="Sort by")
            for prop, label in FILTER_LABELS.items():
                col.prop(d, prop, text=label)  # each dropdown says which filter it is
            checks = layout.column(align=True)  # full width: their labels are long
            checks.prop(d, "recent_only")
            checks.prop(d, "commercial_only")
            legend = layout.column(align=True)
            legend.scale_y = 0.8
            for task, words in TASK_LEGEND.items():
                legend.label(text=words, icon=TASK_ICONS[task])
        shown = matching_names(d, _state.get("list_words", ""))
        row = layout.row()
        row.template_list("RUNWAY_UL_models", "", d, "models", d, "active", rows=4)
        if ws:
            ops = row.column(align=True)
            card = selected_card(d, follow_list=False)
            if card is not None and card.name not in ws.models:
                ops.operator(RUNWAY_OT_workspace_add_model.bl_idname, text="", icon="ADD")
            elif card is not None:
                ops.operator(RUNWAY_OT_workspace_remove_model.bl_idname, text="", icon="REMOVE")
                ops.separator()
                ops.operator(RUNWAY_OT_workspace_move_model.bl_idname, text="",
                             icon="TRIA_UP").offset = -1
                ops.operator(RUNWAY_OT_workspace_move_model.bl_idname, text="",
                             icon="TRIA_DOWN").offset = 1
        if not shown:
            box = layout.box()
            if ws and d.workspace_only and not ws.models:
                box.label(text=f"{ws.name} has no models yet", icon="INFO")
                box.prop(d, "workspace_only", text="Show every model (then add with +)",
                         invert_checkbox=True)
            elif d.recent_only and not recent_store().load():
                box.label(text="No model has run yet", icon="INFO")
                box.operator(RUNWAY_OT_directory_reset_filters.bl_idname, icon="X")
            else:
                box.label(text="No models match" + (f" in {ws.name}" if ws else ""),
                          icon="INFO")
                if any_filter_set(d):
                    box.operator(RUNWAY_OT_directory_reset_filters.bl_idname, icon="X")
                if ws and d.workspace_only:
                    box.operator(RUNWAY_OT_workspace_set.bl_idname,
                                 text="Show All Models").workspace = ""
        elif ws:
            card = selected_card(d, follow_list=False)
            if card is not None and card.name not in ws.models:
                layout.label(text=f"Add {card.list_title} to {ws.name} with +", icon="INFO")
        row = layout.row(align=True)
        row.operator(RUNWAY_OT_model_add.bl_idname, text="Add Your Model", icon="ADD")
        card = selected_card(d)
        if card is not None and card.is_user_model:
            row.operator(RUNWAY_OT_model_edit.bl_idname, text="", icon="GREASEPENCIL")
            row.operator(RUNWAY_OT_model_remove.bl_idname, text="", icon="TRASH")
        for err in cat.errors:
            wrapped(layout.box(), str(err), context)
