"""Set up Blender's window for the Model Directory screenshot (docs/img/directory.png):
the 3D View's sidebar on the Runway tab, one model selected and its card open."""
import bpy

PKG = "bl_ext.user_default.runway"


def show():
    directory = __import__(PKG + ".blender.directory", fromlist=["_"])
    wm = bpy.context.window_manager
    directory.sync_entries(wm.runway_directory)
    d = wm.runway_directory
    d.active = [m.name for m in d.models].index("pose")
    d.show_filters = True
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            area.spaces.active.show_region_ui = True
            for region in area.regions:
                if region.type == "UI":
                    try:
                        region.active_panel_category = "Runway"
                    except (AttributeError, TypeError) as ex:
                        print("cannot pick the tab:", ex)
                    region.tag_redraw()
    return None


bpy.app.timers.register(show, first_interval=0.5)
