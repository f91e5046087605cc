"""The Model Directory: every model card, searchable by words and filterable by
attributes, with the selected card shown whole, in the sidebar's "Runway" tab
of the 3D View, Image Editor, Sequencer and Shader Editor.

The catalog itself (loading, search) is core.catalog; this module only mirrors
it into Blender properties and draws it. Loading reads a few small JSON files,
so it happens on the main thread, once, and again on Refresh.
"""
import textwrap

import bpy
import bpy.utils.previews
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, IntProperty,
                       PointerProperty, StringProperty)

from ..core import catalog as core_catalog

SPACES = (("VIEW_3D", "UI"), ("IMAGE_EDITOR", "UI"), ("SEQUENCE_EDITOR", "UI"),
          ("NODE_EDITOR", "UI"))
TASK_ICONS = {"identify": "VIEWZOOM", "transform": "MOD_UVPROJECT", "generate": "OUTLINER_OB_LIGHT"}
ANY = "ANY"

_state = {"catalog": None, "previews": None}


def get_catalog() -> core_catalog.Catalog:
    if _state["catalog"] is None:
        folder = core_catalog.builtin_models_dir()
        _state["catalog"] = core_catalog.Catalog.load([folder] if folder else [])
    return _state["catalog"]


def _previews():
    if _state["previews"] is None:
        _state["previews"] = bpy.utils.previews.new()
    return _state["previews"]


def gallery_icons(card) -> list:
    """(icon_id, caption) for the card's gallery images, loaded once each."""
    pcoll = _previews()
    captions = {item.file: item.caption for item in card.gallery}
    out = []
    for path in card.gallery_paths():
        key = str(path)
        if key not in pcoll:
            pcoll.load(key, key, "IMAGE")
        rel = path.relative_to(card.folder).as_posix() if card.folder else path.name
        out.append((pcoll[key].icon_id, captions.get(rel, path.name)))
    return out


def _items(values, label_any):
    return [(ANY, label_any, "")] + [(v, v.replace("_", " ").capitalize(), v) for v in values]


class RUNWAY_PG_model_entry(bpy.types.PropertyGroup):
    """One row of the list: the card's name (in `name`) and its title."""

    title: StringProperty()
    task: StringProperty()


def _directory_group():
    """The directory's properties. The filter choices come from the catalog as it is
    at registration: fixed item lists, because enum items from a callback crashed
    the bpy module of Blender 4.2 at exit."""
    cat = get_catalog()
    inputs = sorted({k for c in cat.cards for k in c.characteristics.input_kinds()})
    outputs = sorted({k for c in cat.cards for k in c.characteristics.output_kinds()})

    class RUNWAY_PG_directory(bpy.types.PropertyGroup):
        search: StringProperty(name="Search", description="Words in the title, overview, "
                               "keywords, publishers or authors", options={"TEXTEDIT_UPDATE"})
        task: EnumProperty(name="Task", items=[(ANY, "Any task", "")] + [
            (t, t.capitalize(), f"Models that {t} content") for t in core_catalog.TASKS])
        input_type: EnumProperty(name="Input", items=_items(inputs, "Any input"))
        output_type: EnumProperty(name="Output", items=_items(outputs, "Any output"))
        device: EnumProperty(name="Runs on", items=[(ANY, "CPU or GPU", ""),
                                                    ("CPU", "CPU", "Runs on the CPU"),
                                                    ("GPU", "GPU", "Can use a GPU")])
        commercial_only: BoolProperty(name="Commercial use allowed",
                                      description="Hide models whose licence does not clear "
                                                  "commercial use")
        publisher: EnumProperty(name="Publisher", items=[(ANY, "Any publisher", "")] + [
            (n, n, n) for n in cat.publishers()])
        keyword: EnumProperty(name="Keyword", items=[(ANY, "Any keyword", "")] + [
            (k, k, k) for k in cat.keywords()])
        show_filters: BoolProperty(name="Filters")
        models: CollectionProperty(type=RUNWAY_PG_model_entry)
        active: IntProperty(name="Model")

    return RUNWAY_PG_directory


RUNWAY_PG_directory = _directory_group()


def filters(d) -> dict:
    """The directory's filters as core.catalog.Catalog.search keywords."""
    return {
        "task": None if d.task == ANY else d.task,
        "input_type": None if d.input_type == ANY else d.input_type,
        "output_type": None if d.output_type == ANY else d.output_type,
        "cpu": True if d.device == "CPU" else None,
        "gpu": True if d.device == "GPU" else None,
        "commercial_use": True if d.commercial_only else None,
        "publisher": None if d.publisher == ANY else d.publisher,
        "keyword": None if d.keyword == ANY else d.keyword,
    }


def matching_names(d) -> list:
    return [c.name for c in get_catalog().search(d.search, **filters(d))]


def sync_entries(d) -> None:
    """Mirror the catalog's cards into the list (after loading or a refresh)."""
    d.models.clear()
    for card in get_catalog().cards:
        row = d.models.add()
        row.name, row.title, row.task = card.name, card.title, card.task


def selected_card(d):
    if not 0 <= d.active < len(d.models):
        return None
    name = d.models[d.active].name
    return next((c for c in get_catalog().cards if c.name == name), None)


class RUNWAY_UL_models(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname,
                  index):
        layout.label(text=item.title, icon=TASK_ICONS.get(item.task, "QUESTION"))

    def filter_items(self, context, data, propname):
        rows = getattr(data, propname)
        order = matching_names(data)  # best matches first
        rank = {name: i for i, name in enumerate(order)}
        flags = [self.bitflag_filter_item if r.name in rank else 0 for r in rows]
        neworder = []
        if data.search.strip():
            # Sort by relevance: position of each row in the new order.
            ranked = sorted(range(len(rows)), key=lambda i: rank.get(rows[i].name, len(rank)))
            neworder = [0] * len(rows)
            for new, old in enumerate(ranked):
                neworder[old] = new
        return flags, neworder


class RUNWAY_OT_directory_refresh(bpy.types.Operator):
    bl_idname = "runway.directory_refresh"
    bl_label = "Refresh Model Directory"
    bl_description = "Read the model cards again"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        _state["catalog"] = None
        d = context.window_manager.runway_directory
        sync_entries(d)
        cat = get_catalog()
        from . import props  # the Run panel's widgets follow the cards
        props.build(cat)
        for err in cat.errors:
            self.report({"WARNING"}, str(err))
        self.report({"INFO"}, f"{len(cat.cards)} models"
                    + (f", {len(cat.errors)} broken cards (see the Info log)" if cat.errors
                       else ""))
        return {"FINISHED"}


def _wrapped(layout, text, context=None):
    """Labels wrapped to the sidebar's width (Blender labels do not wrap)."""
    context = context or bpy.context
    region = getattr(context, "region", None)
    scale = context.preferences.system.ui_scale if context.preferences else 1.0
    # About 6.5 px per character of Blender's UI font at scale 1, minus the margins.
    width = max(20, int(((region.width if region else 300) - 30) / (6.5 * scale)))
    col = layout.column(align=True)
    for paragraph in text.splitlines() or [""]:
        for line in textwrap.wrap(paragraph, width) or [""]:
            col.label(text=line)


class _SidebarPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Runway"


class RUNWAY_PT_directory(_SidebarPanel, bpy.types.Panel):
    bl_label = "Model Directory"

    def draw(self, context):
        d = context.window_manager.runway_directory
        layout = self.layout
        cat = get_catalog()
        if len(d.models) != len(cat.cards):
            layout.operator(RUNWAY_OT_directory_refresh.bl_idname, text="Load Models",
                            icon="FILE_REFRESH")
            return
        row = layout.row(align=True)
        row.prop(d, "search", text="", icon="VIEWZOOM")
        row.prop(d, "show_filters", text="", icon="FILTER")
        row.operator(RUNWAY_OT_directory_refresh.bl_idname, text="", icon="FILE_REFRESH")
        if d.show_filters:
            col = layout.column(align=True)
            for prop in ("task", "input_type", "output_type", "device", "publisher", "keyword"):
                col.prop(d, prop, text="")
            col.prop(d, "commercial_only")
        layout.template_list("RUNWAY_UL_models", "", d, "models", d, "active", rows=4)
        for err in cat.errors:
            layout.label(text=str(err)[:90], icon="ERROR")


class _CardPanel(_SidebarPanel):
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
        layout.label(text=c.title, icon=TASK_ICONS.get(c.task, "QUESTION"))
        _wrapped(layout, c.overview)
        if not c.licence.commercial_use.allowed:
            box = layout.box()
            box.label(text="Not cleared for commercial use", icon="ERROR")
            _wrapped(box, c.licence.commercial_use.note)
        icons = gallery_icons(c)
        if icons:
            grid = layout.grid_flow(columns=min(3, len(icons)), even_columns=True)
            for icon_id, caption in icons:
                cell = grid.column(align=True)
                cell.template_icon(icon_value=icon_id, scale=5.0)
                cell.label(text=caption[:28])


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
            _wrapped(col, ch.gpu_note)
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
        _wrapped(col, lic.summary)
        for title, parts in (("Code", lic.code), ("Weights", lic.weights)):
            col.label(text=f"{title}:")
            for p in parts:
                col.label(text=f"{p.component}: {p.spdx}", icon="DOT")
                if p.note:
                    _wrapped(col, p.note)
        col.label(text="Commercial use: " + ("allowed" if lic.commercial_use.allowed
                                             else "NOT cleared"),
                  icon="CHECKMARK" if lic.commercial_use.allowed else "ERROR")
        if lic.commercial_use.note:
            _wrapped(col, lic.commercial_use.note)


class RUNWAY_PT_card_people(_CardPanel, bpy.types.Panel):
    bl_label = "Publishers and Attributions"

    def draw(self, context):
        c = self.card(context)
        col = self.layout.column(align=True)
        for p in c.publishers:
            row = col.row()
            row.label(text=p.name + (f" ({p.role})" if p.role else ""), icon="USER")
            if p.url:
                row.operator("wm.url_open", text="", icon="URL").url = p.url
        col.separator()
        for a in c.attributions:
            row = col.row()
            row.label(text=f"{a.title} ({a.year})" if a.year else a.title, icon="TEXT")
            if a.url:
                row.operator("wm.url_open", text="", icon="URL").url = a.url
            _wrapped(col, a.authors + (f", {a.venue}" if a.venue else ""))


class RUNWAY_PT_card_versions(_CardPanel, bpy.types.Panel):
    bl_label = "Versions and Files"

    def draw(self, context):
        c = self.card(context)
        col = self.layout.column(align=True)
        for v in c.versions:
            col.label(text=f"{v.version}  {v.date or ''}", icon="SEQUENCE")
            if v.notes:
                _wrapped(col, v.notes)
        col.separator()
        for f in c.files:
            size = f"{f.size_bytes / 1e6:.1f} MB" if f.size_bytes else ""
            col.label(text=f"{f.file}  {size}", icon="FILE")


class RUNWAY_PT_card_more(_CardPanel, bpy.types.Panel):
    bl_label = "Keywords, Performance, Links"

    def draw(self, context):
        c = self.card(context)
        col = self.layout.column(align=True)
        _wrapped(col, "Keywords: " + ", ".join(c.keywords))
        col.separator()
        for note in c.performance.notes:
            _wrapped(col, f"{note.what}: {note.value}")
        if c.performance.measured_on:
            _wrapped(col, f"Measured on: {c.performance.measured_on}")
        col.separator()
        for label, urls in c.links.items():
            for url in urls:
                row = col.row()
                row.label(text=f"{label.replace('_', ' ').capitalize()}: {url}")
                row.operator("wm.url_open", text="", icon="URL").url = url


_panels = (RUNWAY_PT_directory, RUNWAY_PT_card, RUNWAY_PT_card_characteristics,
           RUNWAY_PT_card_licence, RUNWAY_PT_card_people, RUNWAY_PT_card_versions,
           RUNWAY_PT_card_more)


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


classes = (
    RUNWAY_PG_model_entry,
    RUNWAY_PG_directory,
    RUNWAY_UL_models,
    RUNWAY_OT_directory_refresh,
    *for_every_space(_panels),
)


def register_properties():
    bpy.types.WindowManager.runway_directory = PointerProperty(type=RUNWAY_PG_directory)


def unregister_properties():
    del bpy.types.WindowManager.runway_directory
    if _state["previews"] is not None:
        bpy.utils.previews.remove(_state["previews"])
    _state.update(catalog=None, previews=None)


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
