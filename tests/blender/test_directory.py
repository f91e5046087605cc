"""The Model Directory in real Blender: the list, search, filters and the card."""
import importlib

import pytest

from tests.helpers import ADDON_PKG, Layout

pytestmark = pytest.mark.blender

SHELF = {"denoise", "face-detection", "person-segmentation", "pose", "style-transfer",
         "text-to-speech", "upscale"}


@pytest.fixture
def directory(blender):
    mod = importlib.import_module(ADDON_PKG + ".blender.directory")
    d = blender.context.window_manager.runway_directory
    assert blender.ops.runway.directory_refresh() == {"FINISHED"}
    yield mod, d
    d.search, d.task, d.input_type, d.output_type = "", "ANY", "ANY", "ANY"
    d.device, d.publisher, d.keyword, d.commercial_only = "ANY", "ANY", "ANY", False
    d.sort, d.recent_only, d.workspace_only = "BEST", False, True


def names(mod, d):
    return set(mod.matching_names(d))


def test_every_shelf_model_is_listed(directory):
    mod, d = directory
    assert {m.name for m in d.models} == SHELF
    assert all(m.title and m.task in ("identify", "transform", "generate") for m in d.models)


def test_search_by_words_and_filters(directory):
    mod, d = directory
    d.search = "upscale"
    assert names(mod, d) == {"upscale"}
    d.search = "mediapipe"
    assert names(mod, d) == {"person-segmentation", "face-detection", "pose"}
    d.search = ""
    d.output_type = "audio"
    assert names(mod, d) == {"text-to-speech"}
    d.output_type = "image_landmarks"
    assert names(mod, d) == {"face-detection", "pose"}
    d.output_type = "ANY"
    d.commercial_only = True
    assert names(mod, d) == SHELF - {"text-to-speech"}
    d.commercial_only = False
    d.task = "generate"
    assert names(mod, d) == {"text-to-speech"}
    d.task = "ANY"
    d.input_type = "text"
    assert names(mod, d) == {"text-to-speech"}
    d.input_type = "ANY"
    d.publisher = "Google (MediaPipe team)"
    assert names(mod, d) == {"person-segmentation", "face-detection", "pose"}


def test_the_list_hides_what_does_not_match_and_ranks_the_rest(directory):
    mod, d = directory

    class Row:  # what filter_items needs of a UIList instance
        bitflag_filter_item = 1 << 30
        filter_name = ""

    d.search = "pose"
    flags, order = mod.RUNWAY_UL_models.filter_items(Row(), None, d, "models")
    shown = {d.models[i].name for i, f in enumerate(flags) if f}
    assert shown == names(mod, d) and "pose" in shown and "upscale" not in shown
    first = min(range(len(order)), key=lambda i: order[i])
    assert d.models[first].name == "pose"  # the title match ranks first


def test_the_selected_card_is_whole(blender, directory):
    mod, d = directory
    d.active = [m.name for m in d.models].index("text-to-speech")
    card = mod.selected_card(d)
    assert card.name == "text-to-speech"
    assert not card.licence.commercial_use.allowed and card.attributions and card.files
    icons = mod.gallery_icons(card)
    pictures = [g for g in card.gallery if not g.file.endswith(".wav")]
    assert [caption for _, caption, _ in icons] == [g.caption for g in pictures]
    assert [f for _, f in mod.gallery_sounds(card)] == ["gallery/speech.wav"]
    if not blender.app.background:  # previews get icon ids once Blender draws them
        assert all(icon_id > 0 for icon_id, _, _ in icons)


def test_the_panels_live_in_every_editor_sidebar(blender, directory):
    for space in ("VIEW_3D", "IMAGE_EDITOR", "SEQUENCE_EDITOR", "NODE_EDITOR"):
        suffix = "" if space == "VIEW_3D" else "_" + space.lower()
        panel = getattr(blender.types, "RUNWAY_PT_directory" + suffix)
        # Registered for that editor (every panel, drawn: test_panels_draw.py).
        assert panel.is_registered and panel.bl_space_type == space
        assert panel.bl_region_type == "UI" and panel.bl_category == "Runway"


class ListRow:  # what filter_items needs of a UIList instance
    bitflag_filter_item = 1 << 30

    def __init__(self, filter_name=""):
        self.filter_name = filter_name


def shown(mod, d, filter_name=""):
    flags, _ = mod.RUNWAY_UL_models.filter_items(ListRow(filter_name), None, d, "models")
    return {d.models[i].name for i, f in enumerate(flags) if f}


def test_the_card_follows_the_list(directory):
    mod, d = directory
    mod.select_model(d, "upscale")
    assert mod.selected_card(d).name == "upscale"
    d.search = "speech"  # hides upscale: no card below for a model the list hides
    assert mod.selected_card(d) is None
    d.search = ""
    d.task = "identify"
    assert mod.selected_card(d) is None
    d.task = "ANY"
    assert mod.selected_card(d).name == "upscale"
    # The list's own filter field (under the list) filters too, and the card follows it.
    assert shown(mod, d, "pose") == {"pose"}
    assert mod.selected_card(d) is None
    assert shown(mod, d, "") == SHELF and mod.selected_card(d).name == "upscale"


def test_no_match_says_so_and_reset_clears_every_filter(blender, directory):
    mod, d = directory
    d.search, d.task, d.commercial_only = "no-such-model-anywhere", "generate", True
    assert mod.matching_names(d) == [] and mod.any_filter_set(d)
    assert blender.ops.runway.directory_reset_filters() == {"FINISHED"}
    assert set(mod.matching_names(d)) == SHELF and not mod.any_filter_set(d)


def test_the_list_searches_once_per_filter_state(directory, monkeypatch):
    mod, d = directory
    cat = mod.get_catalog()
    calls = []
    real = cat.search
    monkeypatch.setattr(cat, "search", lambda *a, **k: calls.append(a) or real(*a, **k))
    d.search = "image"
    for _ in range(5):  # five redraws
        shown(mod, d)
    assert len(calls) == 1
    d.search = "image denoise"
    shown(mod, d)
    assert len(calls) == 2


def test_list_titles_tooltips_icons_and_links(blender, directory):
    mod, d = directory
    # identify no longer borrows the search field's magnifying glass
    assert mod.TASK_ICONS["identify"] != "VIEWZOOM"
    assert len(set(mod.TASK_ICONS.values())) == 3
    cat = mod.get_catalog()
    for row in d.models:
        card = cat.get(row.name)
        assert row.title == card.list_title and len(row.title) <= 40
    i = [m.name for m in d.models].index("text-to-speech")
    props = type("P", (), {"index": i})()
    tip = mod.RUNWAY_OT_directory_select.description(blender.context, props)
    assert cat.get("text-to-speech").title in tip and "Generate" in tip
    assert blender.ops.runway.directory_select(index=i) == {"FINISHED"} and d.active == i
    assert mod.short_url("https://github.com/xinntao/Real-ESRGAN/") == \
        "github.com/xinntao/Real-ESRGAN"
    assert mod.short_url("https://www.example.com/" + "a" * 80).endswith("\u2026")


def draw_all(blender, mod, d):
    drawn = {}
    for cls in mod._panels:
        if getattr(cls, "bl_parent_id", None) and not cls.poll(blender.context):
            continue

        class Fake:
            layout = Layout()

            def card(self, context):
                return mod.selected_card(d)
        panel = Fake()
        cls.draw(panel, blender.context)
        drawn[cls.__name__] = panel.layout.log
    return drawn


def texts(log):
    return [t for _, t, _ in log]


def test_every_directory_panel_draws_and_says_what_it_shows(blender, directory):
    mod, d = directory
    mod.select_model(d, "upscale")
    drawn = draw_all(blender, mod, d)
    assert set(drawn) == {c.__name__ for c in mod._panels}  # the card follows the selection
    links = [t for kind, t, args in drawn["RUNWAY_PT_card_more"] if kind == "operator"]
    assert links and all(t and "://" not in t for t in links)  # buttons say where they go
    d.show_filters = True
    top = drawn = draw_all(blender, mod, d)["RUNWAY_PT_directory"]
    assert {"Task", "Input", "Output", "Runs on", "Publisher", "Keyword"} <= set(texts(top))
    assert any("Identify:" in t for t in texts(top))  # the icon legend
    d.search = "no-such-model-anywhere"
    drawn = draw_all(blender, mod, d)
    assert "RUNWAY_PT_card" not in drawn  # the card hides with the list
    top = texts(drawn["RUNWAY_PT_directory"])
    assert "No models match" in top
    assert any(args and args[0] == "runway.directory_reset_filters"
               for kind, _, args in drawn["RUNWAY_PT_directory"] if kind == "operator")
    d.show_filters = False


def test_sorting_by_name_task_and_recent_use(blender, directory):
    mod, d = directory
    store = mod.recent_store()
    saved = store.path.read_bytes() if store.path.is_file() else None
    cards = {c.name: c for c in mod.get_catalog().cards}
    try:
        d.sort = "NAME"
        order = mod.matching_names(d)
        assert order == sorted(order, key=lambda n: cards[n].list_title.lower())
        d.sort = "TASK"
        tasks = [cards[n].task for n in mod.matching_names(d)]
        assert tasks == sorted(tasks, key=("identify", "transform", "generate").index)
        # Recently used: recorded when a model runs (engine.submit_run calls record_use).
        d.sort = "BEST"
        store.path.unlink(missing_ok=True)
        d.recent_only = True
        assert mod.matching_names(d) == []
        log = draw_all(blender, mod, d)["RUNWAY_PT_directory"]
        assert "No model has run yet" in texts(log)
        assert ("runway.directory_reset_filters",) in [a for kind, _, a in log
                                                       if kind == "operator"]
        store.record("pose", when=1000)
        mod.record_use("upscale")  # now: the newest
        assert set(mod.matching_names(d)) == {"pose", "upscale"}
        d.recent_only = False
        d.sort = "RECENT"
        order = mod.matching_names(d)
        assert order[:2] == ["upscale", "pose"] and set(order) == SHELF
        d.search = "image"  # sorting applies to what the words and filters leave
        assert mod.matching_names(d)[0] == "upscale"
    finally:
        if saved is None:
            store.path.unlink(missing_ok=True)
        else:
            store.path.write_bytes(saved)


def test_in_this_workspace_or_every_model(blender, directory):
    mod, d = directory
    store = mod.workspace_store()
    ws = store.create("Lookdev", ["pose", "denoise"])
    blender.context.scene.runway_workspace = ws.id
    try:
        assert mod.matching_names(d) == ["pose", "denoise"]  # the workspace's order
        top = draw_all(blender, mod, d)["RUNWAY_PT_directory"]
        assert ("workspace_only",) in [a for kind, _, a in top if kind == "prop"]
        d.workspace_only = False  # every model, the workspace still chosen: + adds one
        assert set(mod.matching_names(d)) == SHELF
        mod.select_model(d, "upscale")
        ops = [a for kind, _, a in draw_all(blender, mod, d)["RUNWAY_PT_directory"]
               if kind == "operator"]
        assert ("runway.workspace_add_model",) in ops
        assert blender.ops.runway.workspace_add_model() == {"FINISHED"}
        d.workspace_only = True
        assert mod.matching_names(d) == ["pose", "denoise", "upscale"]
    finally:
        blender.context.scene.runway_workspace = ""
        store.delete(ws.id)


class IconLayout(Layout):
    """Also records template_icon calls (their scale)."""

    def __getattr__(self, name):
        if name == "template_icon":
            return lambda **kw: self.log.append(("icon", "", (kw.get("scale"),)))
        call = super().__getattr__(name)
        return lambda *a, **kw: IconLayout(call(*a, **kw).log)


def test_a_thumbnail_enlarges_and_opens_as_an_image(blender, directory):
    mod, d = directory
    card = mod.get_catalog().get("person-segmentation")
    _, _, rel = mod.gallery_icons(card)[0]
    mod.select_model(d, card.name)
    ops = [a for kind, t, a in draw_all(blender, mod, d)["RUNWAY_PT_card"]
           if kind == "operator" and t == "Enlarge"]
    assert len(ops) == len(card.gallery)  # one per thumbnail

    class Op:  # what the operator's draw() needs of itself
        model, file, bl_idname = card.name, rel, mod.RUNWAY_OT_gallery_view.bl_idname
        layout = IconLayout()

        def _path(self):
            return mod.RUNWAY_OT_gallery_view._path(self)
    op = Op()
    mod.RUNWAY_OT_gallery_view.draw(op, blender.context)
    scales = [a[0] for kind, _, a in op.layout.log if kind == "icon"]
    assert scales and scales[0] >= 20  # the popup's picture, large
    assert blender.ops.runway.gallery_view(model=card.name, file=rel, editor=True) == {"FINISHED"}
    image = next(i for i in blender.data.images if i.filepath.endswith("input.jpg"))
    from PIL import Image
    assert tuple(image.size) == Image.open(card.card_file(rel)).size
    with pytest.raises(RuntimeError, match="No picture"):
        blender.ops.runway.gallery_view(model=card.name, file="../pose/card.json", editor=True)


def test_the_speech_sample_plays_and_a_second_click_stops_it(blender, directory):
    import aud
    mod, d = directory
    try:
        assert blender.ops.runway.gallery_play(model="text-to-speech",
                                               file="gallery/speech.wav") == {"FINISHED"}
        handle = mod._sound["handle"]
        assert isinstance(handle, aud.Handle) and mod._sound["file"].endswith("speech.wav")
        assert aud.Sound(mod._sound["file"]).length > 22050  # over a second at 22.05 kHz
        assert blender.ops.runway.gallery_play(model="text-to-speech",
                                               file="gallery/speech.wav") == {"FINISHED"}
        if handle.status:  # a real output device was playing it: the second click stops
            assert mod._sound["handle"] is None
        with pytest.raises(RuntimeError, match="No sound"):
            blender.ops.runway.gallery_play(model="text-to-speech", file="gallery/none.wav")
    finally:
        mod.stop_sound()


def test_templates_load_into_the_run_panel(blender, directory):
    mod, d = directory
    props = importlib.import_module(ADDON_PKG + ".blender.props")
    scene = blender.context.scene
    mod.select_model(d, "person-segmentation")
    uses = [t for kind, t, a in draw_all(blender, mod, d)["RUNWAY_PT_card"]
            if kind == "operator" and a == ("runway.template_load",)]
    assert uses == ["Use: The photograph of Grace Hopper"]
    assert blender.ops.runway.template_load(model="person-segmentation", index=0) == {"FINISHED"}
    s = props.settings(scene, "person-segmentation")
    assert getattr(s, props.prop_id("in", "image", "src")) == "IMAGE"
    image = getattr(s, props.prop_id("in", "image", "image"))
    assert image is not None and image.filepath.endswith("input.jpg") and image.size[0] > 0
    # A sentence into a text input, settings into a category and a number.
    assert blender.ops.runway.template_load(model="text-to-speech", index=0) == {"FINISHED"}
    s = props.settings(scene, "text-to-speech")
    assert getattr(s, props.prop_id("in", "text", "src")) == "TYPED"
    assert getattr(s, props.prop_id("in", "text")) == "Grace Hopper wrote the first compiler."
    assert blender.ops.runway.template_load(model="style-transfer", index=0) == {"FINISHED"}
    mp, s = props.model("style-transfer"), props.settings(scene, "style-transfer")
    fields = {f.name: f for f in mp.command.inputs}
    assert props.value_of(mp, s, "in", fields["style"]) == 19
    assert props.value_of(mp, s, "in", fields["strength"]) == pytest.approx(0.5)
    with pytest.raises(RuntimeError, match="no example 5"):
        blender.ops.runway.template_load(model="style-transfer", index=4)
