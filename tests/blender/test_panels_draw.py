"""Every panel, menu and list the add-on registers, and its preferences, drawn into a
real UILayout in every editor it claims (real bpy, the factory start-up screen).

The classes come from the add-on's own class list, so a new panel is drawn here
without a new test. Each draw runs in a real area of its editor (an area of the
start-up screen switched to that editor) with the context Blender gives a sidebar:
window, area, its UI region and the editor's space. The layout is Blender's own
(a popup menu's: the one layout background Blender builds without a window), so a
wrong keyword, an unknown icon or a missing property or operator is Blender's
error; what was drawn is read back with ``UILayout.introspect()``. Lists are drawn
by Blender itself through ``template_list`` and menus through ``menu_contents``.
"""
from __future__ import annotations

import json
import re
import types

import numpy as np
import pytest

from tests.helpers import ADDON_PKG, mod

pytestmark = pytest.mark.blender

# The Runway tab is in the sidebar of these editors (README, "The Model Directory").
SIDEBAR = {"VIEW_3D", "IMAGE_EDITOR", "SEQUENCE_EDITOR", "NODE_EDITOR"}
# Panels meant for fewer editors, by label: the result of the image or strip shown.
EDITORS = {"Model Result": {"IMAGE_EDITOR", "SEQUENCE_EDITOR"}}
# The sidebar's node editor is the Shader Editor (an area's ui_type names the tree).
UI_TYPES = {"NODE_EDITOR": "ShaderNodeTree"}
# What Blender prints (it does not raise) for a widget naming something that is not
# there, and for an error in a callback it calls itself (a list's draw_item, a menu).
RNA_WARNINGS = re.compile(r"property not found|unknown operator|not found:|unknown menutype|"
                          r"unknown uilisttype|missing srna|List type .* not found|"
                          r"Traceback \(most recent call last\)|Error:")
USER_MODEL = "p6-options-model"


def bpy_wm():
    import bpy
    return bpy.context.window_manager


def addon_classes(bpy, kind):
    return [c for c in mod("blender").classes if issubclass(c, kind)]


# ------------------------------------------------------------------ drawing


def real_layout(bpy):
    """A real, empty UILayout. The popup is never opened (that needs a window on
    screen), so its block stays allocated: Blender reports it at exit, harmlessly."""
    return bpy.context.window_manager.popmenu_begin__internal("", icon="NONE").layout


def flatten(tree) -> list[dict]:
    out = []
    for item in tree:
        out.append(item)
        out += flatten(item.get("items", []))
    return out


class Drawn:
    """What one draw put into its layout: every widget, its text, operators and
    properties (``UILayout.introspect()``)."""

    def __init__(self, layout):
        self.items = [i for i in flatten(layout.introspect()) if "items" not in i]
        self.texts = [i.get("draw_string", "") for i in self.items]
        self.operators = [i["operator"].split("(")[0].replace("bpy.ops.", "")
                          for i in self.items if "operator" in i]
        self.props = [i["rna"].split("[")[0].split(".")[-1] for i in self.items if "rna" in i]

    def has_text(self, words: str) -> bool:
        """``words`` in one widget, or across the lines a long text was wrapped into."""
        return words in " ".join(t for t in self.texts if t)

    def __repr__(self):
        return f"Drawn(texts={self.texts}, operators={self.operators}, props={self.props})"


def area_of(bpy, space: str):
    """The start-up screen's first area, switched to ``space``; its context override."""
    window = bpy.context.window_manager.windows[0]
    area = window.screen.areas[0]
    area.ui_type = UI_TYPES.get(space, space)
    assert area.type == space, (area.type, space)
    return window, area


def override(bpy, space: str, region_type: str):
    window, area = area_of(bpy, space)
    region = next(r for r in area.regions if r.type == region_type)
    return bpy.context.temp_override(window=window, screen=window.screen, area=area,
                                     region=region)


def draw_panel(bpy, cls, capfd) -> tuple[Drawn, Drawn | None]:
    """(body, header) of one registered panel, drawn as Blender draws it in its own
    editor's sidebar: poll first, then draw_header and draw."""
    with override(bpy, cls.bl_space_type, cls.bl_region_type):
        context = bpy.context
        assert context.space_data.type == cls.bl_space_type
        assert cls.poll(context) if hasattr(cls, "poll") else True, \
            f"{cls.__name__} does not show in {cls.bl_space_type}"
        header = None
        if hasattr(cls, "draw_header"):
            layout = real_layout(bpy)
            cls.draw_header(_as_panel(cls, layout), context)
            header = Drawn(layout)
        layout = real_layout(bpy)
        cls.draw(_as_panel(cls, layout), context)
        body = Drawn(layout)
    _no_rna_warnings(capfd, cls.__name__)
    return body, header


def _as_panel(cls, layout):
    """What Blender passes a panel's draw as ``self``: an object with the layout and
    the methods and attributes the add-on's classes give the panel."""
    panel = types.SimpleNamespace(layout=layout)
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith(ADDON_PKG):
            continue
        for name, value in vars(klass).items():
            if name.startswith("__"):
                continue
            if isinstance(value, types.FunctionType):
                value = types.MethodType(value, panel)
            elif isinstance(value, (classmethod, staticmethod)):
                value = getattr(cls, name)
            setattr(panel, name, value)
    return panel


def _no_rna_warnings(capfd, what: str) -> None:
    got = capfd.readouterr()  # Blender prints its UI warnings to stdout, errors to stderr
    bad = [line[:200] for line in (got.out + got.err).splitlines()
           if RNA_WARNINGS.search(line)]
    assert not bad, f"{what}: {bad}"


# ------------------------------------------------------------------ the world


def png(bpy, path, rgba=(255, 0, 0, 255)):
    image = bpy.data.images.new("strip source", 4, 4, alpha=True)
    image.pixels.foreach_set(np.tile(np.array(rgba, np.float32) / 255, 16))
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)
    return path


RECORD = {"model": "upscale", "output": "output", "time_utc": "2026-12-01T12:00:00Z",
          "frame": 1, "predict_time": 0.5, "runtime": "local process",
          "inputs": {"image": {"source": "image", "image": "source"}}, "options": {}}


@pytest.fixture
def world(blender, tmp_path, capfd):
    """The shelf plus one model of your own with setup options (so every Run
    sub-panel shows), selected; a result image and a result strip shown."""
    bpy = blender
    directory, props, catalog = mod("blender.directory"), mod("blender.props"), \
        mod("core.catalog")
    spec_mod, user_models = mod("core.spec"), mod("core.user_models")
    spec = spec_mod.ModelSpec.model_validate({
        "protocol": "runway",
        "commands": [{"name": "translate",
                      "inputs": [{"name": "image", "type": "image"},
                                 {"name": "caption", "type": "text", "default": "hi"},
                                 {"name": "seed", "type": "vector", "length": 3}],
                      "outputs": [{"name": "output", "type": "image"}]}],
        "options": [{"name": "checkpoint", "type": "category", "choices": ["a", "b"],
                     "default": "a"},
                    {"name": "strength", "type": "number", "default": 0.5},
                    {"name": "api_key", "type": "secret"}]})
    card = user_models.prefilled_card(USER_MODEL, "Options Model", spec,
                                      {"kind": "url", "value": "http://127.0.0.1:9/",
                                       "protocol": "runway"})
    # Every part of a card the card panels show, written here (the shelf's cards change).
    card.update({
        "publishers": [{"name": "Tencent ARC Lab", "role": "weights",
                        "url": "https://github.com/xinntao/Real-ESRGAN"}],
        "attributions": [{"authors": "Xintao Wang", "title": "Real-ESRGAN", "year": 2021,
                          "url": "https://arxiv.org/abs/2107.10833"}],
        "versions": [{"version": "1.0.1", "date": "2025-10-15", "notes": "first"}],
        "files": [{"file": "REALESRGAN_X4PLUS_UP4X.bin", "size_bytes": 33424520}],
        "links": {"code": ["https://github.com/xinntao/Real-ESRGAN"]},
        "performance": {"measured_on": "a test machine",
                        "notes": [{"what": "cold start", "value": "0.5 s"}]}})
    card["name"] = USER_MODEL
    user_models.save_user_card(tmp_path / "models", card, spec)
    cat = catalog.Catalog.load([catalog.builtin_models_dir(), tmp_path / "models"])
    assert not cat.errors, cat.errors
    directory._state["catalog"] = cat
    directory._match_cache["key"] = None
    props.build(cat)
    d = bpy.context.window_manager.runway_directory
    directory.sync_entries(d)
    directory.select_model(d, USER_MODEL)
    assert directory.selected_card(d).name == USER_MODEL

    result = bpy.data.images.new("upscaled", 4, 4)
    result[mod("blender.outputs").PROP] = json.dumps(RECORD)
    _, area = area_of(bpy, "IMAGE_EDITOR")
    area.spaces.active.image = result
    scene = bpy.context.scene
    ed = scene.sequence_editor_create()
    strips = ed.strips if hasattr(ed, "strips") else ed.sequences  # Blender 5 renamed it
    strip = strips.new_image("upscaled strip", str(png(bpy, tmp_path / "s.png")), 1, 1)
    strip[mod("blender.outputs").PROP] = json.dumps(dict(RECORD, output="strip"))
    ed.active_strip = strip
    capfd.readouterr()
    yield bpy
    directory._state["catalog"] = None
    directory._match_cache["key"] = None
    props.build(directory.get_catalog())
    area_of(bpy, "PROPERTIES")


# ------------------------------------------------------------------ what each shows


def _expect(label: str, body: Drawn, header: Drawn | None, space: str) -> None:
    """What each panel must show in the world above, by label. A panel not named
    here still has to draw something."""
    b = body
    if label == "Model Directory":
        assert "runway.directory_refresh" in b.operators and "search" in b.props
        assert b.has_text("All models")  # the workspace menu's button
        assert "runway.model_add" in b.operators
        # The list, drawn by Blender through RUNWAY_UL_models: a row per model it
        # shows (as many as fit; the selected one among them), titled as the card says.
        rows = [t for t, op in zip(b.texts, [i.get("operator", "") for i in b.items])
                if "directory_select" in op]
        titles = {m.title for m in bpy_wm().runway_directory.models}
        assert "Options Model" in rows and len(rows) >= 4 and set(rows) <= titles, rows
        # Your own model, selected: edit and remove.
        assert {"runway.model_edit", "runway.model_remove"} <= set(b.operators)
    elif label == "Model Card":
        assert b.has_text("Options Model") and b.has_text("Added by you from url")
        assert b.has_text("Not cleared for commercial use")
    elif label == "Characteristics":
        assert b.has_text("Published:") and "Inputs:" in b.texts and "image" in b.texts
    elif label == "Licence":
        assert b.has_text("Commercial use: NOT cleared")
    elif label == "Publishers and Attributions":
        assert b.has_text("Tencent ARC Lab") and "wm.url_open" in b.operators
    elif label == "Versions and Files":
        assert b.has_text("1.0.1") and b.has_text("REALESRGAN_X4PLUS_UP4X.bin")
    elif label == "Keywords, Performance, Links":
        assert b.has_text("Keywords: added by you") and b.has_text("cold start")
        assert "wm.url_open" in b.operators and b.has_text("github.com/xinntao/Real-ESRGAN")
    elif label == "Run":
        assert "Session: stopped" in b.texts and "run_on" in b.props
        assert {"runway.run", "runway.session_start", "runway.session_stop",
                "runway.show_logs", "runway.export_job", "runway.confirm_licence"} \
            <= set(b.operators)
        assert "Run" in b.texts
    elif label == "Inputs":
        props = mod("blender.props")
        assert {props.prop_id("in", "image", "src"), props.prop_id("in", "caption", "src"),
                props.prop_id("in", "seed")} <= set(b.props), b
        assert "runway.sample_vector" in b.operators
    elif label == "Setup Options":
        props = mod("blender.props")
        assert "Changing these restarts the model" in b.texts
        assert {props.prop_id("opt", "checkpoint"), props.prop_id("opt", "strength")} \
            <= set(b.props)
        assert b.has_text("Api key: secret, never stored")  # a secret is never a widget
        assert props.prop_id("opt", "api_key") not in b.props
    elif label == "Outputs":
        assert "Output" in b.texts and mod("blender.props").prop_id(
            "out", "output", "targets") in b.props
    elif label == "Render Post-processing":
        assert header is not None and header.props == ["enabled"]
        assert {"model", "to_files", "folder", "suffix", "to_strip", "on_failure"} \
            <= set(b.props)
    elif label == "Model Result":
        output = "strip" if space == "SEQUENCE_EDITOR" else "output"
        assert f"upscale -> {output}" in b.texts and "image: image source" in b.texts
        assert b.has_text("model time 0.50 s")
        assert {"runway.run_again", "runway.export_result_job"} <= set(b.operators)
    assert b.items, f"{label} drew nothing"


# ------------------------------------------------------------------ tests


def test_every_panel_is_registered_in_every_editor_it_is_meant_for(blender):
    bpy = blender
    panels = addon_classes(bpy, bpy.types.Panel)
    by_label: dict[str, set] = {}
    for cls in panels:
        by_label.setdefault(cls.bl_label, set()).add(cls.bl_space_type)
        registered = getattr(bpy.types, cls.bl_idname if hasattr(cls, "bl_idname")
                             else cls.__name__, None)
        assert registered is cls and cls.is_registered, cls.__name__
        assert cls.bl_region_type == "UI" and cls.bl_category == "Runway", cls.__name__
        parent = getattr(cls, "bl_parent_id", "")
        if parent:  # a sub-panel's parent is in the same editor
            assert getattr(bpy.types, parent).bl_space_type == cls.bl_space_type, cls.__name__
    assert len(by_label) >= 13, by_label
    for label, spaces in by_label.items():
        assert spaces == EDITORS.get(label, SIDEBAR), label
    assert addon_classes(bpy, bpy.types.Menu) and addon_classes(bpy, bpy.types.UIList)


@pytest.mark.parametrize("space", sorted(SIDEBAR))
def test_every_panel_draws_in_its_editor(world, space, capfd):
    bpy = world
    drawn = set()
    for cls in addon_classes(bpy, bpy.types.Panel):
        if cls.bl_space_type != space:
            continue
        body, header = draw_panel(bpy, cls, capfd)
        _expect(cls.bl_label, body, header, space)
        drawn.add(cls.bl_label)
    meant = {c.bl_label for c in addon_classes(bpy, bpy.types.Panel)
             if space in EDITORS.get(c.bl_label, SIDEBAR)}
    assert drawn == meant and len(drawn) >= 12, (space, drawn)


def test_menus_draw_their_items(world, capfd):
    """Each menu, drawn by Blender (menu_contents) in every editor whose Runway tab
    opens it."""
    bpy = world
    for cls in addon_classes(bpy, bpy.types.Menu):
        for space in sorted(SIDEBAR):
            with override(bpy, space, "UI"):
                layout = real_layout(bpy)
                layout.menu_contents(cls.bl_idname)
                drawn = Drawn(layout)
            _no_rna_warnings(capfd, f"{cls.__name__} in {space}")
            assert drawn.items, f"{cls.__name__} drew nothing in {space}"
            if cls.bl_idname == "RUNWAY_MT_workspaces":
                assert "All models" in drawn.texts and \
                    {"runway.workspace_set", "runway.workspace_new"} <= set(drawn.operators)


def test_every_list_draws_its_rows(world, capfd, monkeypatch):
    """Each UIList's draw_item is called by Blender's template_list from the panel or
    preferences showing it, with a real layout per row."""
    bpy = world
    rows: dict[str, int] = {}
    def counting(name, real):
        # Blender passes as many arguments as the method names (defaults count too):
        # exactly draw_item's, spelt out.
        def draw_item(self, context, layout, data, item, icon, active_data, active_propname,
                      index):
            rows[name] = rows.get(name, 0) + 1
            return real(self, context, layout, data, item, icon, active_data,
                        active_propname, index)
        return draw_item

    for cls in addon_classes(bpy, bpy.types.UIList):
        monkeypatch.setattr(cls, "draw_item", counting(cls.__name__, cls.draw_item))
    prefs = bpy.context.preferences.addons[ADDON_PKG].preferences
    assert bpy.ops.runway.endpoint_add() == {"FINISHED"}
    try:
        for cls in addon_classes(bpy, bpy.types.Panel):
            if cls.bl_space_type == "VIEW_3D":
                draw_panel(bpy, cls, capfd)
        drawn = draw_preferences(bpy, capfd)
        kinds = dict((k, n) for k, n, _ in mod("blender.preferences").ENDPOINT_KINDS)
        endpoint_row = kinds[prefs.endpoints[0].kind]
    finally:
        prefs.endpoints.clear()
    assert set(rows) == {c.__name__ for c in addon_classes(bpy, bpy.types.UIList)}, rows
    assert rows["RUNWAY_UL_models"] >= 4 and rows["RUNWAY_UL_endpoints"] >= 1, rows
    assert endpoint_row in drawn.texts, drawn


def draw_preferences(bpy, capfd) -> Drawn:
    """The add-on's preferences drawn as Blender's Preferences editor draws them:
    the class's layout set, then draw() on the real preferences."""
    prefs = bpy.context.preferences.addons[ADDON_PKG].preferences
    cls = type(prefs)
    with override(bpy, "PREFERENCES", "WINDOW"):
        layout = real_layout(bpy)
        cls.layout = layout
        try:
            prefs.draw(bpy.context)
        finally:
            del cls.layout
        drawn = Drawn(layout)
    _no_rna_warnings(capfd, "the preferences")
    return drawn


def test_preferences_draw_in_the_preferences_editor(blender, capfd):
    bpy = blender
    prefs = bpy.context.preferences.addons[ADDON_PKG].preferences
    capfd.readouterr()
    drawn = draw_preferences(bpy, capfd)
    assert {"default_runtime", "docker_host", "memory_limit_gb", "cache_folder",
            "idle_minutes"} <= set(drawn.props), drawn
    assert "Remote endpoints" in drawn.texts and "Model catalog folders" in drawn.texts
    assert {"runway.endpoint_add", "runway.endpoint_remove",
            "runway.catalog_folder_add"} <= set(drawn.operators)
    assert drawn.has_text("Your own models: ")
    # The bpy module runs with online access off: the preferences say what that means.
    assert not bpy.app.online_access and drawn.has_text("Online access is off")
    # An endpoint selected: its fields, its token state and the connection test.
    assert bpy.ops.runway.endpoint_add() == {"FINISHED"}
    try:
        prefs.default_runtime = "REMOTE"
        drawn = draw_preferences(bpy, capfd)
        ep = prefs.endpoints[prefs.active_endpoint]
        assert {"name", "kind", "url"} <= set(drawn.props)
        assert drawn.has_text(f"Remote GPU uses the selected endpoint: {ep.name}")
        assert "runway.endpoint_test" in drawn.operators
        assert "No token" in drawn.texts or drawn.has_text("Token from the environment")
        assert "runway.token_set" in drawn.operators
    finally:
        prefs.endpoints.clear()
        prefs.default_runtime = "LOCAL_PROCESS"
