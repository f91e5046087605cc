"""The Runway tab of the editors' sidebars: the panels' common place, each panel
once per editor, and labels wrapped to the sidebar's width (the Model Directory,
the Run panel, post-processing and the preferences draw with these)."""
import textwrap

import bpy

SPACES = (("VIEW_3D", "UI"), ("IMAGE_EDITOR", "UI"), ("SEQUENCE_EDITOR", "UI"),
          ("NODE_EDITOR", "UI"))


def wrapped(layout, text, context=None, columns: int = 1):
    """Labels wrapped to the sidebar's width (Blender labels do not wrap); with
    ``columns``, to the width of one of that many columns of a grid."""
    context = context or bpy.context
    region = getattr(context, "region", None)
    scale = (context.preferences.system.ui_scale if context.preferences else 1.0) or 1.0
    # About 6.5 px per character of Blender's UI font at scale 1, minus the margins.
    width = max(8 if columns > 1 else 20, int(
        ((region.width if region else 300) - 30) / max(1, columns) / (6.5 * scale)))
    col = layout.column(align=True)
    for paragraph in text.splitlines() or [""]:
        for line in textwrap.wrap(paragraph, width) or [""]:
            col.label(text=line)


class SidebarPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Runway"


def for_every_space(panels):
    """Each panel once per editor whose sidebar shows the Runway tab."""
    out = []
    for space, region in SPACES:
        suffix = "" if space == "VIEW_3D" else "_" + space.lower()
        for panel in panels:
            attrs = {"bl_space_type": space, "bl_region_type": region,
                     "bl_idname": panel.__name__ + suffix}
            if getattr(panel, "bl_parent_id", None):
                attrs["bl_parent_id"] = panel.bl_parent_id + suffix
            out.append(type(panel.__name__ + suffix, (panel,), attrs))
    return tuple(out)

