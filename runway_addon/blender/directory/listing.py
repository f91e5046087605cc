"""The Model Directory's state: the catalog mirrored into Blender properties,
the workspace and "Recently used" stores, the filters, the sort and the list's
matches, and which card is selected.

The catalog itself (loading, search) is core.catalog. Loading reads a few small
JSON files, so it happens on the main thread, once, and again on Refresh.
"""
import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, IntProperty, StringProperty

from ...core import catalog as core_catalog
from ...core import workspaces as core_workspaces


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

_state = {"catalog": None, "workspaces": None, "recent": None}
# The list's matches by filter state: Blender redraws the sidebar often and
# filter_items runs on every redraw; the catalog is searched once per state.
_match_cache = {"key": None, "names": []}


def catalog_folders() -> list:
    """The built-in shelf, your own models, then the preferences' catalog folders."""
    from .. import preferences
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


def _user_store(key: str, store_type):
    """The store ``key`` of ``_state``, kept in the extension's user folder; made
    again when that folder moves (another user folder, a test's)."""
    from .. import preferences
    folder = preferences.user_folder()
    store = _state[key]
    if store is None or str(store.path.parent) != folder:
        store = _state[key] = store_type(folder)
    return store


def workspace_store() -> core_workspaces.WorkspaceStore:
    """The workspaces, in the extension's user folder (beside your own models)."""
    return _user_store("workspaces", core_workspaces.WorkspaceStore)


def recent_store() -> core_workspaces.RecentStore:
    """When each model last ran, beside the workspaces in the user folder."""
    return _user_store("recent", core_workspaces.RecentStore)


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


def card_named(name: str):
    """The catalog's card ``name``, or None."""
    return next((c for c in get_catalog().cards if c.name == name), None)


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
    return card_named(name)


def select_model(d, name: str) -> bool:
    for i, row in enumerate(d.models):
        if row.name == name:
            d.active = i
            return True
    return False


def reset_filters(d) -> None:
    d.search = ""
    for prop in FILTER_LABELS:
        setattr(d, prop, ANY)
    d.commercial_only = d.recent_only = False


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
    from .. import props
    props.build(cat)
    return cat


def forget() -> None:
    """Drop the catalog and the stores (unregister): the next use reads them again."""
    _state.update(catalog=None, workspaces=None, recent=None)
    _match_cache["key"] = None
