"""The Model Directory in real Blender: the list, search, filters and the card."""
import importlib

import pytest

from tests.conftest import ADDON_PKG

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
    assert [caption for _, caption in icons] == [g.caption for g in card.gallery]
    if not blender.app.background:  # previews get icon ids once Blender draws them
        assert all(icon_id > 0 for icon_id, _ in icons)


def test_the_panels_live_in_every_editor_sidebar(blender, directory):
    for suffix in ("", "_image_editor", "_sequence_editor", "_node_editor"):
        panel = getattr(blender.types, "RUNWAY_PT_directory" + suffix)
        assert panel.bl_region_type == "UI" and panel.bl_category == "Runway"
