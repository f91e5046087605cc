"""The Model Directory: every model card, searchable by words and filterable by
attributes, with the selected card shown whole, in the sidebar's "Runway" tab
of the 3D View, Image Editor, Sequencer and Shader Editor.

One concept a module: listing (state, filters, sort, the list's matches),
list_panel (the panel and its list), card (the card's panels), media (gallery,
enlarge, speech sample), templates (example inputs), workspaces, add_model (your
own models). This module registers them and names what the rest of the add-on uses.
"""
import bpy
from bpy.props import PointerProperty, StringProperty

# Besides registering, the names the Run panels, the engine, batch jobs, the
# screenshots and the tests use (directory.selected_card, directory._wrapped, ...).
from ...core import catalog as core_catalog
from ..layout import SidebarPanel as _SidebarPanel
from ..layout import for_every_space
from ..layout import wrapped as _wrapped
from . import listing, media
from .add_model import RUNWAY_OT_model_add, RUNWAY_OT_model_edit, RUNWAY_OT_model_remove
from .card import (RUNWAY_PT_card, RUNWAY_PT_card_characteristics, RUNWAY_PT_card_licence,
                   RUNWAY_PT_card_more, RUNWAY_PT_card_people, RUNWAY_PT_card_versions,
                   short_url)
from .list_panel import (RUNWAY_OT_directory_refresh, RUNWAY_OT_directory_reset_filters,
                         RUNWAY_OT_directory_select, RUNWAY_PT_directory, RUNWAY_UL_models)
from .listing import (TASK_ICONS, RUNWAY_PG_directory, RUNWAY_PG_model_entry, _match_cache,
                      _state, active_workspace, any_filter_set, get_catalog, matching_names,
                      recent_store, record_use, reload_catalog, reset_filters, select_model,
                      selected_card, sync_entries, workspace_store)
from .media import (RUNWAY_OT_gallery_play, RUNWAY_OT_gallery_view, _sound, gallery_icons,
                    gallery_sounds, playing, stop_sound)
from .templates import RUNWAY_OT_template_load, load_template
from .workspaces import (RUNWAY_MT_workspaces, RUNWAY_OT_workspace_add_model,
                         RUNWAY_OT_workspace_delete, RUNWAY_OT_workspace_move_model,
                         RUNWAY_OT_workspace_new, RUNWAY_OT_workspace_remove_model,
                         RUNWAY_OT_workspace_rename, RUNWAY_OT_workspace_set)

_panels = (RUNWAY_PT_directory, RUNWAY_PT_card, RUNWAY_PT_card_characteristics,
           RUNWAY_PT_card_licence, RUNWAY_PT_card_people, RUNWAY_PT_card_versions,
           RUNWAY_PT_card_more)

# The PropertyGroups first: RUNWAY_PG_directory holds RUNWAY_PG_model_entry rows.
classes = (
    RUNWAY_PG_model_entry,
    RUNWAY_PG_directory,
    RUNWAY_OT_directory_select,
    RUNWAY_UL_models,
    RUNWAY_OT_directory_refresh,
    RUNWAY_OT_directory_reset_filters,
    RUNWAY_MT_workspaces,
    RUNWAY_OT_workspace_set,
    RUNWAY_OT_workspace_new,
    RUNWAY_OT_workspace_rename,
    RUNWAY_OT_workspace_delete,
    RUNWAY_OT_workspace_add_model,
    RUNWAY_OT_workspace_remove_model,
    RUNWAY_OT_workspace_move_model,
    RUNWAY_OT_model_add,
    RUNWAY_OT_model_edit,
    RUNWAY_OT_model_remove,
    RUNWAY_OT_gallery_view,
    RUNWAY_OT_gallery_play,
    RUNWAY_OT_template_load,
    *for_every_space(_panels),
)


def register_properties():
    bpy.types.WindowManager.runway_directory = PointerProperty(type=RUNWAY_PG_directory)
    # The workspace shown, per .blend (saved with the scene; the workspaces themselves
    # live in the user folder).
    bpy.types.Scene.runway_workspace = StringProperty(
        name="Workspace", description="The Model Directory's workspace in this .blend "
                                      "(empty: all models)")


def unregister_properties():
    del bpy.types.WindowManager.runway_directory
    del bpy.types.Scene.runway_workspace
    media.release()
    listing.forget()


def _sync_all_windows() -> None:
    for wm in bpy.data.window_managers:
        sync_entries(wm.runway_directory)


@bpy.app.handlers.persistent
def _on_load_post(*_args):
    # A file load brings a new window manager, with an empty list.
    _sync_all_windows()


def _sync_soon():
    _sync_all_windows()
    return None  # run once


def start():
    """Fill the list now where possible (timers do not run in background mode,
    and register() may not write data), and after every file load."""
    bpy.app.handlers.load_post.append(_on_load_post)
    if not bpy.app.background:
        bpy.app.timers.register(_sync_soon, first_interval=0.1)


def stop():
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    if bpy.app.timers.is_registered(_sync_soon):
        bpy.app.timers.unregister(_sync_soon)
