"""The selected model's card, drawn whole below the list: overview, gallery,
templates, then its characteristics, licence, people, versions and links."""
from urllib.parse import urlparse

import bpy

from ..layout import SidebarPanel, wrapped
from .listing import TASK_ICONS, TASK_LEGEND, selected_card
from .media import (RUNWAY_OT_gallery_play, RUNWAY_OT_gallery_view, gallery_icons,
                    gallery_sounds, playing)
from .templates import RUNWAY_OT_template_load


def short_url(url: str, limit: int = 34) -> str:
    """Where a link goes, short enough for a button: host and path."""
    u = urlparse(url)
    text = (u.netloc + u.path).removeprefix("www.").rstrip("/") or url
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


class _CardPanel(SidebarPanel):
    bl_parent_id = "RUNWAY_PT_directory"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return selected_card(context.window_manager.runway_directory) is not None

    def card(self, context):
        return selected_card(context.window_manager.runway_directory)


class RUNWAY_PT_card(_CardPanel, bpy.types.Panel):
    bl_label = "Model Card"
    bl_options = set()

    def draw(self, context):
        c = self.card(context)
        layout = self.layout
        wrapped(layout, c.title, context)
        layout.label(text=TASK_LEGEND.get(c.task, c.task), icon=TASK_ICONS.get(c.task, "QUESTION"))
        if c.is_user_model:
            layout.label(text=f"Added by you from {c.source.kind}:", icon="USER")
            wrapped(layout, c.source.value, context)  # a path or address, never cut
        wrapped(layout, c.overview, context)
        if not c.licence.commercial_use.allowed:
            box = layout.box()
            box.label(text="Not cleared for commercial use", icon="ERROR")
            wrapped(box, c.licence.commercial_use.note)
        icons = gallery_icons(c)
        if icons:
            columns = min(3, len(icons))
            grid = layout.grid_flow(columns=columns, even_columns=True)
            for icon_id, caption, rel in icons:
                cell = grid.column(align=True)
                cell.template_icon(icon_value=icon_id, scale=5.0)
                op = cell.operator(RUNWAY_OT_gallery_view.bl_idname, text="Enlarge",
                                   icon="FULLSCREEN_ENTER")
                op.model, op.file = c.name, rel
                wrapped(cell, caption, context, columns=columns)  # whole, never cut
        now = playing()
        for caption, rel in gallery_sounds(c):
            on = bool(now) and c.card_file(rel) is not None and str(c.card_file(rel)) == now
            op = layout.operator(RUNWAY_OT_gallery_play.bl_idname,
                                 text="Stop" if on else "Play Sample",
                                 icon="PAUSE" if on else "PLAY")
            op.model, op.file = c.name, rel
            wrapped(layout, caption, context)
        if c.templates:
            col = layout.column(align=True)
            wrapped(col, "Templates: example inputs for the Run panel", context)
            for i, t in enumerate(c.templates):
                op = col.operator(RUNWAY_OT_template_load.bl_idname, text=f"Use: {t.title}",
                                  icon="IMPORT")
                op.model, op.index = c.name, i


class RUNWAY_PT_card_characteristics(_CardPanel, bpy.types.Panel):
    bl_label = "Characteristics"

    def draw(self, context):
        ch = self.card(context).characteristics
        col = self.layout.column(align=True)
        col.label(text=f"Published: {ch.published or 'unknown'}")
        col.label(text=f"Updated: {ch.updated or 'unknown'}")
        col.label(text="Runs on: " + ", ".join(d for d, ok in (("CPU", ch.cpu), ("GPU", ch.gpu))
                                               if ok))
        if ch.gpu_note:
            wrapped(col, ch.gpu_note)
        col.label(text=f"Size on disk: {ch.environment_size or 'unknown'}")
        col.label(text=f"Licence: {ch.licence_name}")
        col.separator()
        col.label(text="Inputs:")
        for t in ch.input_types:
            col.label(text=t, icon="IMPORT")
        col.label(text="Outputs:")
        for t in ch.output_types:
            col.label(text=t, icon="EXPORT")


class RUNWAY_PT_card_licence(_CardPanel, bpy.types.Panel):
    bl_label = "Licence"

    def draw(self, context):
        lic = self.card(context).licence
        col = self.layout.column(align=True)
        wrapped(col, lic.summary)
        for title, parts in (("Code", lic.code), ("Weights", lic.weights)):
            col.label(text=f"{title}:")
            for p in parts:
                col.label(text=f"{p.component}: {p.spdx}", icon="DOT")
                if p.note:
                    wrapped(col, p.note)
        col.label(text="Commercial use: " + ("allowed" if lic.commercial_use.allowed
                                             else "NOT cleared"),
                  icon="CHECKMARK" if lic.commercial_use.allowed else "ERROR")
        if lic.commercial_use.note:
            wrapped(col, lic.commercial_use.note)


class RUNWAY_PT_card_people(_CardPanel, bpy.types.Panel):
    bl_label = "Publishers and Attributions"

    def draw(self, context):
        c = self.card(context)
        col = self.layout.column(align=True)
        for p in c.publishers:
            row = col.row()
            row.label(text=p.name + (f" ({p.role})" if p.role else ""), icon="USER")
            if p.url:
                row.operator("wm.url_open", text=short_url(p.url, 24), icon="URL").url = p.url
        col.separator()
        for a in c.attributions:
            row = col.row()
            row.label(text=f"{a.title} ({a.year})" if a.year else a.title, icon="TEXT")
            if a.url:
                col.operator("wm.url_open", text=short_url(a.url), icon="URL").url = a.url
            wrapped(col, a.authors + (f", {a.venue}" if a.venue else ""))


class RUNWAY_PT_card_versions(_CardPanel, bpy.types.Panel):
    bl_label = "Versions and Files"

    def draw(self, context):
        c = self.card(context)
        col = self.layout.column(align=True)
        for v in c.versions:
            col.label(text=f"{v.version}  {v.date or ''}", icon="SEQUENCE")
            if v.notes:
                wrapped(col, v.notes)
        col.separator()
        for f in c.files:
            size = f"{f.size_bytes / 1e6:.1f} MB" if f.size_bytes else ""
            col.label(text=f"{f.file}  {size}", icon="FILE")


class RUNWAY_PT_card_more(_CardPanel, bpy.types.Panel):
    bl_label = "Keywords, Performance, Links"

    def draw(self, context):
        c = self.card(context)
        col = self.layout.column(align=True)
        wrapped(col, "Keywords: " + ", ".join(c.keywords))
        col.separator()
        for note in c.performance.notes:
            wrapped(col, f"{note.what}: {note.value}")
        if c.performance.measured_on:
            wrapped(col, f"Measured on: {c.performance.measured_on}")
        col.separator()
        for label, urls in c.links.items():
            col.label(text=label.replace('_', ' ').capitalize() + ":")
            for url in urls:
                col.operator("wm.url_open", text=short_url(url), icon="URL").url = url
