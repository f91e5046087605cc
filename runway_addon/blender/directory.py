"""The Model Directory: every model card, searchable by words and filterable by
attributes, with the selected card shown whole, in the sidebar's "Runway" tab
of the 3D View, Image Editor, Sequencer and Shader Editor.

The catalog itself (loading, search) is core.catalog; this module only mirrors
it into Blender properties and draws it. Loading reads a few small JSON files,
so it happens on the main thread, once, and again on Refresh.
"""
import textwrap
from urllib.parse import urlparse

import bpy
import bpy.utils.previews
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, IntProperty,
                       PointerProperty, StringProperty)

from ..core import catalog as core_catalog
from ..core import workspaces as core_workspaces
from ..core.errors import RunwayError
from .reports import report_error

SPACES = (("VIEW_3D", "UI"), ("IMAGE_EDITOR", "UI"), ("SEQUENCE_EDITOR", "UI"),
          ("NODE_EDITOR", "UI"))
# "identify" has its own icon (an eye): the magnifying glass is the search field's.
TASK_ICONS = {"identify": "HIDE_OFF", "transform": "MOD_UVPROJECT", "generate": "OUTLINER_OB_LIGHT"}
TASK_WORDS = {"identify": "Identify: finds things in an image (masks, boxes, points)",
              "transform": "Transform: changes an image (style, size, noise)",
              "generate": "Generate: makes something new (speech, images)"}
# The legend's lines: short enough for the default sidebar width (labels are cut there).
TASK_LEGEND = {"identify": "Identify: finds things", "transform": "Transform: changes images",
               "generate": "Generate: makes new ones"}
ANY = "ANY"
FILTER_LABELS = {"task": "Task", "input_type": "Input", "output_type": "Output",
                 "device": "Runs on", "publisher": "Publisher", "keyword": "Keyword"}

SORTS = (("BEST", "Best match", "Best matches first (a workspace's own order without words)"),
         ("NAME", "Name", "By title, A to Z"),
         ("TASK", "Task", "By task (identify, transform, generate), then title"),
         ("RECENT", "Recently used", "The models you ran last first"))
RECENT_SHOWN = 10  # what the "Recently used" filter keeps

_state = {"catalog": None, "previews": None, "workspaces": None, "recent": None}
# The list's matches by filter state: Blender redraws the sidebar often and
# filter_items runs on every redraw; the catalog is searched once per state.
_match_cache = {"key": None, "names": []}


def catalog_folders() -> list:
    """The built-in shelf, your own models, then the preferences' catalog folders."""
    from . import preferences
    folder = core_catalog.builtin_models_dir()
    out = [folder] if folder else []
    try:
        out += preferences.catalog_folders()
    except (AttributeError, RuntimeError, ValueError, OSError):
        pass  # preferences not readable yet (registration): the shelf alone
    return out


def get_catalog() -> core_catalog.Catalog:
    if _state["catalog"] is None:
        _state["catalog"] = core_catalog.Catalog.load(catalog_folders())
        _match_cache["key"] = None
    return _state["catalog"]


def workspace_store() -> core_workspaces.WorkspaceStore:
    """The workspaces, in the extension's user folder (beside your own models)."""
    from . import preferences
    folder = preferences.user_folder()
    store = _state["workspaces"]
    if store is None or str(store.path.parent) != folder:
        store = _state["workspaces"] = core_workspaces.WorkspaceStore(folder)
    return store


def recent_store() -> core_workspaces.RecentStore:
    """When each model last ran, beside the workspaces in the user folder."""
    from . import preferences
    folder = preferences.user_folder()
    store = _state["recent"]
    if store is None or str(store.path.parent) != folder:
        store = _state["recent"] = core_workspaces.RecentStore(folder)
    return store


def record_use(model: str) -> None:
    """A model ran (the Run panel, a script, a job file): for "Recently used"."""
    try:
        recent_store().record(model)
    except OSError as e:  # a read-only user folder must not stop a run
        print(f"Runway: could not record that {model} was used: {e}")
    _match_cache["key"] = None


def active_workspace(context=None):
    """The workspace this .blend shows (Scene.runway_workspace), or None."""
    context = context or bpy.context
    scene = getattr(context, "scene", None)
    wid = getattr(scene, "runway_workspace", "") if scene is not None else ""
    return workspace_store().get(wid) if wid else None


def _previews():
    if _state["previews"] is None:
        _state["previews"] = bpy.utils.previews.new()
    return _state["previews"]


def short_url(url: str, limit: int = 34) -> str:
    """Where a link goes, short enough for a button: host and path."""
    u = urlparse(url)
    text = (u.netloc + u.path).removeprefix("www.").rstrip("/") or url
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _rel(card, path) -> str:
    return path.relative_to(card.folder).as_posix() if card.folder else path.name


def gallery_icons(card) -> list:
    """(icon_id, caption, file) for the card's gallery images, loaded once each."""
    pcoll = _previews()
    captions = {item.file: item.caption for item in card.gallery}
    out = []
    for path in card.gallery_paths():
        if path.suffix.lower() in core_catalog.AUDIO_SUFFIXES:
            continue
        key = str(path)
        if key not in pcoll:
            pcoll.load(key, key, "IMAGE")
        rel = _rel(card, path)
        out.append((pcoll[key].icon_id, captions.get(rel, path.name), rel))
    return out


def gallery_sounds(card) -> list:
    """(caption, file) for the card's gallery sounds (a speech sample)."""
    captions = {item.file: item.caption for item in card.gallery}
    return [(captions.get(_rel(card, p), p.name), _rel(card, p)) for p in card.gallery_paths()
            if p.suffix.lower() in core_catalog.AUDIO_SUFFIXES]


def _card_named(name: str):
    return next((c for c in get_catalog().cards if c.name == name), None)


class RUNWAY_OT_gallery_view(bpy.types.Operator):
    """Show a gallery picture large: a popup, or an Image Editor"""

    bl_idname = "runway.gallery_view"
    bl_label = "Enlarge"
    bl_options = {"INTERNAL"}

    model: StringProperty(options={"SKIP_SAVE"})
    file: StringProperty(options={"SKIP_SAVE"})
    editor: BoolProperty(name="In an Image Editor", options={"SKIP_SAVE"},
                         description="Open the picture in an Image Editor (a new window when "
                                     "none is open) instead of a popup")

    def _path(self):
        card = _card_named(self.model)
        return card.card_file(self.file) if card else None

    def invoke(self, context, event):
        if self._path() is None:
            self.report({"ERROR"}, f"No picture {self.file!r} in the card of {self.model}")
            return {"CANCELLED"}
        if self.editor:
            return self.execute(context)
        return context.window_manager.invoke_popup(self, width=int(560 * max(
            1.0, context.preferences.system.ui_scale)))

    def draw(self, context):
        card, path = _card_named(self.model), self._path()
        if path is None:
            return
        pcoll = _previews()
        if str(path) not in pcoll:
            pcoll.load(str(path), str(path), "IMAGE")
        layout = self.layout
        layout.template_icon(icon_value=pcoll[str(path)].icon_id, scale=26.0)
        caption = next((g.caption for g in card.gallery if g.file == self.file), "")
        _wrapped(layout, caption, context)
        op = layout.operator(self.bl_idname, text="Open in an Image Editor", icon="IMAGE_DATA")
        op.model, op.file, op.editor = self.model, self.file, True

    def execute(self, context):
        """Load the picture as an image (once) and show it in an Image Editor."""
        from . import outputs
        path = self._path()
        if path is None:
            self.report({"ERROR"}, f"No picture {self.file!r} in the card of {self.model}")
            return {"CANCELLED"}
        image = bpy.data.images.load(str(path), check_existing=True)
        shown = outputs.show_in_image_editor(image)
        if not shown and not bpy.app.background and bpy.ops.wm.window_new.poll():
            bpy.ops.wm.window_new()  # no Image Editor open: a new window becomes one
            window = context.window_manager.windows[-1]
            area = max(window.screen.areas, key=lambda a: a.width * a.height)
            area.type = "IMAGE_EDITOR"
            area.spaces.active.image = image
            shown = True
        self.report({"INFO"}, f"Showing {image.name}" if shown else
                    f"Loaded the picture as the image {image.name}")
        return {"FINISHED"}


_sound = {"handle": None, "file": "", "device": None}


def playing() -> str:
    """The gallery sound playing now ('' when none)."""
    h = _sound["handle"]
    return _sound["file"] if h is not None and h.status else ""


class RUNWAY_OT_gallery_play(bpy.types.Operator):
    """Play the card's speech sample (again: stop it)"""

    bl_idname = "runway.gallery_play"
    bl_label = "Play Sample"
    bl_options = {"INTERNAL"}

    model: StringProperty(options={"SKIP_SAVE"})
    file: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        import aud  # Blender's own audio library: it plays through Blender's output device
        card = _card_named(self.model)
        path = card.card_file(self.file) if card else None
        if path is None:
            self.report({"ERROR"}, f"No sound {self.file!r} in the card of {self.model}")
            return {"CANCELLED"}
        was = playing()
        stop_sound()
        if was == str(path):
            return {"FINISHED"}  # a second click stops it
        if _sound["device"] is None:
            _sound["device"] = aud.Device()
        _sound["handle"] = _sound["device"].play(aud.Sound(str(path)))
        _sound["file"] = str(path)
        return {"FINISHED"}


def stop_sound() -> None:
    h = _sound["handle"]
    if h is not None:
        h.stop()
    _sound.update(handle=None, file="")


class RUNWAY_OT_template_load(bpy.types.Operator):
    """Load this example's inputs into the Run panel (a picture becomes its image input)"""

    bl_idname = "runway.template_load"
    bl_label = "Use Example"
    bl_options = {"INTERNAL", "UNDO"}

    model: StringProperty(options={"SKIP_SAVE"})
    index: IntProperty(options={"SKIP_SAVE"})

    @classmethod
    def description(cls, context, properties):
        card = _card_named(properties.model)
        if card is None or not 0 <= properties.index < len(card.templates):
            return "Load the example's inputs into the Run panel"
        t = card.templates[properties.index]
        return f"Sets {', '.join(t.inputs)} in the Run panel" + (f"\n{t.note}" if t.note else "")

    def execute(self, context):
        try:
            names = load_template(context, self.model, self.index)
        except RunwayError as e:
            return report_error(self, e)
        self.report({"INFO"}, f"Set {', '.join(names)} of {self.model}")
        return {"FINISHED"}


def load_template(context, model: str, index: int) -> list:
    """Set the Run panel's inputs of ``model`` from its card's template ``index``:
    values into the widgets, a picture loaded as an image (once) and chosen as
    that input's Image source. The names that were set."""
    from . import props
    card, mp = _card_named(model), props.model(model)
    s = props.settings(context.scene, model)
    if card is None or not 0 <= index < len(card.templates):
        raise RunwayError(f"{model!r} has no example {index + 1}.")
    if mp is None or mp.cls is None or s is None:
        raise RunwayError(f"{model!r} cannot run here: {mp.error if mp else 'not loaded'}",
                          hint="Refresh the Model Directory.")
    template = card.templates[index]
    fields = {f.name: f for f in mp.command.inputs}
    for name, value in template.inputs.items():
        f = fields.get(name)
        if f is None:
            raise RunwayError(f"The example {template.title!r} sets {name!r}, which "
                              f"{card.title} has no input for.", hint="Fix the model card.")
        if f.type in ("image", "file"):
            path = card.card_file(value)
            if path is None:
                raise RunwayError(f"The example {template.title!r} names {value!r}, which is "
                                  f"not a file of the card.", hint="Fix the model card.")
            if f.type == "file":
                setattr(s, props.prop_id("in", name), str(path))
                continue
            image = bpy.data.images.load(str(path), check_existing=True)
            setattr(s, props.prop_id("in", name, "src"), "IMAGE")
            setattr(s, props.prop_id("in", name, "image"), image)
            continue
        if f.type == "text":
            setattr(s, props.prop_id("in", name, "src"), "TYPED")
        props.set_value(mp, s, "in", f, value)
    return list(template.inputs)


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
        sort: EnumProperty(name="Sort", items=SORTS, default="BEST")
        recent_only: BoolProperty(name="Recently used", description=f"Only the "
                                  f"{RECENT_SHOWN} models you ran last")
        workspace_only: BoolProperty(name="In this workspace", default=True,
                                     description="Only the workspace's models; off: every "
                                                 "model, to add some with +")
        show_filters: BoolProperty(name="Filters")
        models: CollectionProperty(type=RUNWAY_PG_model_entry)
        active: IntProperty(name="Model")

    return RUNWAY_PG_directory


RUNWAY_PG_directory = _directory_group()


def any_filter_set(d) -> bool:
    return bool(d.search.strip()) or d.commercial_only or d.recent_only or any(
        getattr(d, p) != ANY for p in FILTER_LABELS)


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


def matching_names(d, extra_words: str = "", workspace="current") -> list:
    """The names the list shows, in its order (cached by filter state). In a
    workspace ("In this workspace" on), only its models, in the workspace's order
    unless words rank them; "Recently used" keeps the models run last; the sort
    (best match, name, task, recently used) orders what is left."""
    cat = get_catalog()
    ws = active_workspace() if workspace == "current" else workspace
    if ws is not None and not d.workspace_only:
        ws = None
    words = f"{d.search} {extra_words}".strip()
    f = filters(d)
    used = recent_store().load() if d.recent_only or d.sort == "RECENT" else {}
    key = (id(cat), len(cat.cards), words, tuple(f.items()),
           (ws.id, tuple(ws.models)) if ws else None, d.sort, d.recent_only,
           tuple(sorted(used.items())))
    if _match_cache["key"] != key:
        names = set(ws.models) if ws else None
        if d.recent_only:
            latest = set(sorted(used, key=lambda n: -used[n])[:RECENT_SHOWN])
            names = latest if names is None else names & latest
        found = cat.search(words, names=names, **f)
        if d.sort == "NAME":
            found.sort(key=lambda c: c.list_title.lower())
        elif d.sort == "TASK":
            order = {t: i for i, t in enumerate(core_catalog.TASKS)}
            found.sort(key=lambda c: (order.get(c.task, 9), c.list_title.lower()))
        elif d.sort == "RECENT":
            found.sort(key=lambda c: -used.get(c.name, 0.0))  # stable: never used last
        elif ws and not words:
            pos = {n: i for i, n in enumerate(ws.models)}
            found.sort(key=lambda c: pos[c.name])
        _match_cache.update(key=key, names=[c.name for c in found])
    return list(_match_cache["names"])


def sync_entries(d) -> None:
    """Mirror the catalog's cards into the list (after loading or a refresh)."""
    d.models.clear()
    for card in get_catalog().cards:
        row = d.models.add()
        row.name, row.title, row.task = card.name, card.list_title, card.task


def selected_card(d, *, follow_list: bool = True):
    """The card the list has selected; None when the search, a filter or the
    workspace hides it (the card below follows the list)."""
    if not 0 <= d.active < len(d.models):
        return None
    name = d.models[d.active].name
    if follow_list and name not in set(matching_names(d, _state.get("list_words", ""))):
        return None
    return next((c for c in get_catalog().cards if c.name == name), None)


def select_model(d, name: str) -> bool:
    for i, row in enumerate(d.models):
        if row.name == name:
            d.active = i
            return True
    return False


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
            card = next((c for c in get_catalog().cards if c.name == row.name), None)
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


def reset_filters(d) -> None:
    d.search = ""
    for prop in FILTER_LABELS:
        setattr(d, prop, ANY)
    d.commercial_only = d.recent_only = False


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


def reload_catalog(context=None) -> core_catalog.Catalog:
    """Read the cards again; the list and the Run panel's widgets follow."""
    context = context or bpy.context
    _state["catalog"] = None
    _match_cache["key"] = None
    d = context.window_manager.runway_directory
    selected = d.models[d.active].name if 0 <= d.active < len(d.models) else ""
    sync_entries(d)
    if selected:
        select_model(d, selected)
    cat = get_catalog()
    from . import props
    props.build(cat)
    return cat


# ----------------------------------------------------------------------------- workspaces

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


class RUNWAY_OT_workspace_new(bpy.types.Operator):
    bl_idname = "runway.workspace_new"
    bl_label = "New Workspace"
    bl_description = "A new workspace (with the selected model, if one is shown)"
    bl_options = {"INTERNAL"}

    name: StringProperty(name="Name", default="My Workspace", options={"SKIP_SAVE"})
    add_selected: bpy.props.BoolProperty(name="Add the selected model", default=True)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        d = context.window_manager.runway_directory
        card = selected_card(d)
        models = [card.name] if (card is not None and self.add_selected) else []
        try:
            ws = workspace_store().create(self.name, models)
        except (RunwayError, OSError) as e:
            return report_error(self, e)
        context.scene.runway_workspace = ws.id
        self.report({"INFO"}, f"Workspace {ws.name} created")
        return {"FINISHED"}


class _OnActiveWorkspace:
    @classmethod
    def poll(cls, context):
        return bool(getattr(context.scene, "runway_workspace", ""))


class RUNWAY_OT_workspace_rename(_OnActiveWorkspace, bpy.types.Operator):
    bl_idname = "runway.workspace_rename"
    bl_label = "Rename Workspace"
    bl_description = "Rename the workspace shown"
    bl_options = {"INTERNAL"}

    name: StringProperty(name="Name", options={"SKIP_SAVE"})

    def invoke(self, context, event):
        ws = active_workspace(context)
        self.name = ws.name if ws else ""
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        try:
            workspace_store().rename(context.scene.runway_workspace, self.name)
        except (RunwayError, OSError) as e:
            return report_error(self, e)
        return {"FINISHED"}


class RUNWAY_OT_workspace_delete(_OnActiveWorkspace, bpy.types.Operator):
    bl_idname = "runway.workspace_delete"
    bl_label = "Delete Workspace"
    bl_description = "Delete the workspace shown (its models stay in the directory)"
    bl_options = {"INTERNAL"}

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        try:
            workspace_store().delete(context.scene.runway_workspace)
        except (RunwayError, OSError) as e:
            return report_error(self, e)
        context.scene.runway_workspace = ""
        return {"FINISHED"}


class _WorkspaceModelOp(_OnActiveWorkspace):
    bl_options = {"INTERNAL"}

    model: StringProperty(name="Model", description="Empty: the selected model",
                          options={"SKIP_SAVE"})

    def model_name(self, context):
        if self.model:
            return self.model
        card = selected_card(context.window_manager.runway_directory, follow_list=False)
        return card.name if card is not None else ""

    def execute(self, context):
        name = self.model_name(context)
        if not name:
            self.report({"ERROR"}, "No model selected")
            return {"CANCELLED"}
        try:
            self.change(workspace_store(), context.scene.runway_workspace, name)
        except (RunwayError, OSError) as e:
            return report_error(self, e)
        return {"FINISHED"}


class RUNWAY_OT_workspace_add_model(_WorkspaceModelOp, bpy.types.Operator):
    bl_idname = "runway.workspace_add_model"
    bl_label = "Add to Workspace"
    bl_description = "Add the selected model to the workspace shown"

    def change(self, store, wid, name):
        store.add_model(wid, name)


class RUNWAY_OT_workspace_remove_model(_WorkspaceModelOp, bpy.types.Operator):
    bl_idname = "runway.workspace_remove_model"
    bl_label = "Remove from Workspace"
    bl_description = "Take the selected model out of the workspace shown (it stays in the "\
                     "directory)"

    def change(self, store, wid, name):
        store.remove_model(wid, name)


class RUNWAY_OT_workspace_move_model(_WorkspaceModelOp, bpy.types.Operator):
    bl_idname = "runway.workspace_move_model"
    bl_label = "Move in Workspace"
    bl_description = "Move the selected model up or down in the workspace's order"

    offset: IntProperty(name="Offset", default=-1)

    def change(self, store, wid, name):
        store.move_model(wid, name, self.offset)


# ----------------------------------------------------------------------------- your own models

ADD_KINDS = (("FOLDER", "Model folder", "A Cog predictor folder (cog.yaml and predict.py)"),
             ("IMAGE", "Docker image", "A Cog model's Docker image on this computer, or one "
                                       "Docker can pull (runs in Docker)"),
             ("URL", "Model server URL", "A running Cog or Runway Model SDK server"),
             ("REPLICATE", "Replicate model", "owner/name[:version] on Replicate (needs a "
                                               "Replicate endpoint's token)"))
EDIT_TASKS = (("SOURCE", "From the source", "Guess from the model's inputs and outputs"),
              *((t, t.capitalize(), TASK_WORDS[t]) for t in core_catalog.TASKS))


def _replicate_token():
    from . import preferences
    prefs = preferences.get_preferences()
    for ep in (prefs.endpoints if prefs else ()):
        if ep.kind == "REPLICATE":
            token = preferences.endpoint_token(ep)
            if token:
                return token
    import os
    return os.environ.get("REPLICATE_API_TOKEN")


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
        from . import preferences
        from ..core import user_models
        try:
            if self.kind == "FOLDER":
                if not self.folder.strip():
                    raise user_models.UserModelError("Choose the model's folder.")
                from .sessions import runtime_dirs
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
                                                             token=_replicate_token())
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
    model: StringProperty(name="Model", description="Empty: the selected model",
                          options={"SKIP_SAVE"})

    def user_card(self, context):
        d = context.window_manager.runway_directory
        card = (next((c for c in get_catalog().cards if c.name == self.model), None)
                if self.model else selected_card(d))
        return card if card is not None and card.is_user_model else None


class RUNWAY_OT_model_edit(_OnUserModel, bpy.types.Operator):
    bl_idname = "runway.model_edit"
    bl_label = "Edit Model Card"
    bl_description = "Edit the card of a model you added"
    bl_options = {"INTERNAL"}

    title: StringProperty(name="Title", options={"SKIP_SAVE"})
    short_title: StringProperty(name="Short title", options={"SKIP_SAVE"})
    task: EnumProperty(name="Task", items=EDIT_TASKS, default="SOURCE")
    overview: StringProperty(name="Overview", options={"SKIP_SAVE"})
    keywords: StringProperty(name="Keywords", description="Comma-separated",
                             options={"SKIP_SAVE"})

    def invoke(self, context, event):
        card = self.user_card(context)
        if card is None:
            self.report({"ERROR"}, "Only the cards of models you added can be edited")
            return {"CANCELLED"}
        self.model = card.name
        self.title, self.short_title = card.title, card.short_title or ""
        self.task, self.overview = card.task, card.overview
        self.keywords = ", ".join(card.keywords)
        return context.window_manager.invoke_props_dialog(self, width=420)

    def execute(self, context):
        from ..core import user_models
        card = self.user_card(context)
        if card is None:
            self.report({"ERROR"}, "Only the cards of models you added can be edited")
            return {"CANCELLED"}
        try:
            user_models.edit_user_card(f"{card.card_dir}/card.json", **card_edits(self))
        except (RunwayError, OSError, ValueError) as e:
            return report_error(self, e)
        reload_catalog(context)
        return {"FINISHED"}


class RUNWAY_OT_model_remove(_OnUserModel, bpy.types.Operator):
    bl_idname = "runway.model_remove"
    bl_label = "Remove Your Model"
    bl_description = "Forget a model you added (its card; never the model's own folder)"
    bl_options = {"INTERNAL"}

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        from ..core import user_models
        card = self.user_card(context)
        if card is None:
            self.report({"ERROR"}, "Only models you added can be removed")
            return {"CANCELLED"}
        user_models.remove_user_card(str(__import__("pathlib").Path(card.card_dir).parent),
                                     card.name)
        reload_catalog(context)
        return {"FINISHED"}


def _wrapped(layout, text, context=None, columns: int = 1):
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
        store = workspace_store()
        ws = active_workspace(context)
        row = layout.row(align=True)
        row.menu(RUNWAY_MT_workspaces.bl_idname, text=ws.name if ws else "All models",
                 icon="ASSET_MANAGER" if ws else "COLLECTION_NEW")
        if ws:
            row.operator(RUNWAY_OT_workspace_rename.bl_idname, text="", icon="GREASEPENCIL")
        for problem in (store.problem, recent_store().problem):
            if problem:
                _wrapped(layout.box(), problem, context)
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
            _wrapped(layout.box(), str(err), context)


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
        _wrapped(layout, c.title, context)
        layout.label(text=TASK_LEGEND.get(c.task, c.task), icon=TASK_ICONS.get(c.task, "QUESTION"))
        if c.is_user_model:
            layout.label(text=f"Added by you from {c.source.kind}:", icon="USER")
            _wrapped(layout, c.source.value, context)  # a path or address, never cut
        _wrapped(layout, c.overview, context)
        if not c.licence.commercial_use.allowed:
            box = layout.box()
            box.label(text="Not cleared for commercial use", icon="ERROR")
            _wrapped(box, c.licence.commercial_use.note)
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
                _wrapped(cell, caption, context, columns=columns)  # whole, never cut
        now = playing()
        for caption, rel in gallery_sounds(c):
            on = bool(now) and c.card_file(rel) is not None and str(c.card_file(rel)) == now
            op = layout.operator(RUNWAY_OT_gallery_play.bl_idname,
                                 text="Stop" if on else "Play Sample",
                                 icon="PAUSE" if on else "PLAY")
            op.model, op.file = c.name, rel
            _wrapped(layout, caption, context)
        if c.templates:
            col = layout.column(align=True)
            _wrapped(col, "Templates: example inputs for the Run panel", context)
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
                row.operator("wm.url_open", text=short_url(p.url, 24), icon="URL").url = p.url
        col.separator()
        for a in c.attributions:
            row = col.row()
            row.label(text=f"{a.title} ({a.year})" if a.year else a.title, icon="TEXT")
            if a.url:
                col.operator("wm.url_open", text=short_url(a.url), icon="URL").url = a.url
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
            col.label(text=label.replace('_', ' ').capitalize() + ":")
            for url in urls:
                col.operator("wm.url_open", text=short_url(url), icon="URL").url = url


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
    stop_sound()
    _sound["device"] = None
    if _state["previews"] is not None:
        bpy.utils.previews.remove(_state["previews"])
    _state.update(catalog=None, previews=None, workspaces=None, recent=None)
    _match_cache["key"] = None


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
