import json
from pathlib import Path

import pytest

from runway_addon.core import catalog
from runway_addon.core.catalog import Catalog, CatalogError, load_card
from runway_addon.core.errors import NotFound
from tests.helpers import example_card


def card(**over):
    return example_card(**over)


def write(folder, data, name="card.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(data if isinstance(data, str) else json.dumps(data))
    return folder / name


def test_a_broken_card_is_reported_and_the_others_still_load(tmp_path):
    write(tmp_path / "good", card())
    write(tmp_path / "notjson", "{oops")
    write(tmp_path / "badfield", card(name="x2", task="summon", licence={"code": []}))
    write(tmp_path / "dup", card(title="Second"))
    cat = Catalog.load([tmp_path])
    assert [c.name for c in cat.cards] == ["edge-finder"]
    msgs = " | ".join(str(e) for e in cat.errors)
    assert len(cat.errors) == 3
    assert "notjson/card.json is not valid JSON" in msgs
    assert "task:" in msgs and "licence.weights: Field required" in msgs
    assert "share the name 'edge-finder'" in msgs


def test_unsafe_ids_and_folder_from_the_file_are_refused(tmp_path):
    with pytest.raises(CatalogError, match="name:"):
        load_card(write(tmp_path / "a", card(name="../../etc")))
    c = load_card(write(tmp_path / "b", card(folder="/somewhere/else")))
    assert c.folder == str(tmp_path / "b")


def test_gallery_never_leaves_the_card_folder(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"x")
    write(tmp_path / "m", card(gallery=[{"file": "../secret.png"}, {"file": "g.png"}]))
    (tmp_path / "m" / "g.png").write_bytes(b"png")
    c = load_card(tmp_path / "m" / "card.json")
    assert [p.name for p in c.gallery_paths()] == ["g.png"]


def test_search_by_words_and_attributes(tmp_path):
    write(tmp_path / "a", card())
    write(tmp_path / "b", card(name="voice", title="Voice", task="generate",
                               overview="Speaks text aloud.", keywords=["speech", "edges"],
                               licence={"code": [{"component": "tts", "spdx": "GPL-3.0"}],
                                        "weights": [{"component": "voice", "spdx": "NOASSERTION",
                                                     "note": "research only"}],
                                        "commercial_use": {"allowed": False},
                                        "summary": "research only"},
                               characteristics={"input_types": ["text"],
                                                "output_types": ["audio (WAV)"], "gpu": True}))
    cat = Catalog.load([tmp_path])
    assert [c.name for c in cat.search("edges")] == ["edge-finder", "voice"]
    assert [c.name for c in cat.search("speaks")] == ["voice"]
    assert [c.name for c in cat.search("edges photograph")] == ["edge-finder"]
    assert [c.name for c in cat.search(output_type="audio")] == ["voice"]
    assert [c.name for c in cat.search(commercial_use=True)] == ["edge-finder"]
    assert [c.name for c in cat.search(gpu=True)] == ["voice"]
    assert [c.name for c in cat.search(publisher="Acme Lab")] == ["edge-finder", "voice"]
    assert cat.search(task="transform") == []
    assert cat.publishers() == ["Acme Lab"]


def test_every_bundled_card_is_complete():
    folder = catalog.builtin_models_dir()
    assert folder is not None and folder.name == "models"
    cat = Catalog.load([folder])
    assert cat.errors == []
    assert len(cat.cards) >= 6
    assert {c.task for c in cat.cards} == {"identify", "transform", "generate"}
    for c in cat.cards:
        assert c.runnable, c.name
        assert c.versions and c.files and c.publishers and c.attributions and c.keywords, c.name
        assert c.gallery_paths(), f"{c.name}: no gallery image"
        assert c.characteristics.environment_size_bytes, c.name
        assert c.performance.notes and c.performance.measured_on, c.name
        assert c.links.get("code") and c.licence.summary, c.name
    # The speech model's licence restriction is stated, not hidden.
    assert not cat.get("text-to-speech").licence.commercial_use.allowed


def test_the_word_index_finds_exactly_what_a_scan_of_the_texts_finds():
    """Search looks terms up in an index of words; any part of a word, with or
    without punctuation, matches exactly the cards whose text holds it."""
    cat = Catalog.load([catalog.builtin_models_dir()])
    texts = {c.name: c.text() for c in cat.cards}
    for term in ("e", "ima", "image", "x4", "-", "real-esr", "(", "2d", "mit", "zzz", "pose"):
        found = [c.name for c in cat.search(term)]
        assert sorted(found) == sorted(n for n, t in texts.items() if term in t), term
        assert len(found) == len(set(found))
    two = cat.search("image style")
    assert {c.name for c in two} == {n for n, t in texts.items() if "image" in t and "style" in t}
    assert two[0].name == "style-transfer"  # both words in its title or keywords


def test_shelf_cards_speak_to_artists_and_their_templates_fit_the_model():
    cat = Catalog.load([catalog.builtin_models_dir()])
    developer = ("start()", "RUNNING", "predict_time", "bench/", ".py", "cog ", "client",
                 "models-offline")
    for c in cat.cards:
        assert c.short_title and len(c.short_title) <= catalog.LIST_TITLE_CHARS, c.name
        assert c.list_title == c.short_title
        words = " ".join([c.performance.measured_on] + [f"{n.what} {n.value}"
                                                        for n in c.performance.notes])
        assert not [w for w in developer if w in words], (c.name, words)
        assert any("CPU" in n.what for n in c.performance.notes), c.name  # a frame, in words
        assert any(n.what == "On a GPU" for n in c.performance.notes), c.name
        inputs = {f.name: f for f in catalog.load_spec(c).command().inputs}
        for t in c.templates:
            assert t.inputs and set(t.inputs) <= set(inputs), (c.name, t.title)
            for name, value in t.inputs.items():
                if inputs[name].type in ("image", "file"):
                    assert c.card_file(value), (c.name, value)  # a file of the card's own
    assert {c.name for c in cat.cards if c.templates} >= {"person-segmentation",
                                                           "text-to-speech", "style-transfer"}
    speech = [p for p in cat.get("text-to-speech").gallery_paths()
              if p.suffix in catalog.AUDIO_SUFFIXES]
    assert [p.name for p in speech] == ["speech.wav"]
    assert cat.get("person-segmentation").card_file("../pose/card.json") is None


# ---------------------------------------------------------------- card details

@pytest.mark.parametrize("title, short, shown", [
    ("Edge Finder", None, "Edge Finder"),
    ("A title of exactly 24 ch", None, "A title of exactly 24 ch"),
    ("Body Pose (MediaPipe BlazePose, full model)", None, "Body Pose"),
    ("Style Transfer: fast neural style, four styles", None, "Style Transfer"),
    ("Supercalifragilistic expialidocious words", None, "Supercalifragilistic\u2026"),
    ("Real-ESRGAN x4, general, anime, faces", None, "Real-ESRGAN x4\u2026"),  # no comma left
    ("Body Pose (MediaPipe BlazePose, full model)", "Pose", "Pose"),
])
def test_list_titles_fit_the_list(tmp_path, title, short, shown):
    c = load_card(write(tmp_path / "m", card(title=title, short_title=short)))
    assert c.list_title == shown and len(c.list_title) <= catalog.LIST_TITLE_CHARS


def test_runnable_needs_a_cog_yaml_or_a_saved_spec(tmp_path):
    c = load_card(write(tmp_path / "m", card()))
    assert not c.runnable and not c.is_user_model
    (tmp_path / "m" / "cog.yaml").write_text("predict: predict.py:Predictor\n")
    assert load_card(tmp_path / "m" / "card.json").runnable
    u = load_card(write(tmp_path / "u", card(name="mine", source={"kind": "url",
                                                                  "value": "http://h:1"})))
    assert u.is_user_model and not u.runnable
    (tmp_path / "u" / catalog.USER_SPEC_FILE).write_text("{}")
    assert load_card(tmp_path / "u" / "card.json").runnable


def test_a_user_card_for_a_model_folder_runs_from_that_folder(tmp_path):
    model = tmp_path / "elsewhere" / "model"
    c = load_card(write(tmp_path / "u", card(name="mine", source={"kind": "folder",
                                                                  "value": str(model)})))
    assert c.folder == str(model) and c.card_dir == str(tmp_path / "u")


def test_card_files_stay_inside_the_folder_and_must_exist(tmp_path):
    c = load_card(write(tmp_path / "m", card()))
    (tmp_path / "m" / "sub").mkdir()
    (tmp_path / "m" / "sub" / "a.png").write_bytes(b"a")
    (tmp_path / "outside.png").write_bytes(b"o")
    assert c.card_file("sub/a.png") == (tmp_path / "m" / "sub" / "a.png").resolve()
    assert c.card_file("../outside.png") is None
    assert c.card_file("sub/missing.png") is None
    assert c.card_file("sub") is None  # a folder is not a file
    assert c.card_file(5) is None
    c.folder = None
    assert c.card_file("sub/a.png") is None


def test_the_search_text_holds_every_searched_field(tmp_path):
    c = load_card(write(tmp_path / "m", card(attributions=[{"authors": "Ada Byron",
                                                            "title": "Notes On Engines"}])))
    text = c.text()
    for part in ("edge-finder", "edge finder", "finds edges", "identify", "edges", "lines",
                 "acme lab", "ada byron", "notes on engines", "image", "mit code"):
        assert part in text, part
    assert text == text.lower()


def test_input_and_output_kinds_are_the_first_word_lower_cased(tmp_path):
    c = load_card(write(tmp_path / "m", card(characteristics={
        "input_types": ["Image (RGB)", "text"], "output_types": ["audio (WAV) file"]})))
    assert c.characteristics.input_kinds() == {"image", "text"}
    assert c.characteristics.output_kinds() == {"audio"}


# ---------------------------------------------------------------- broken cards

def test_each_kind_of_broken_card_says_what_is_wrong(tmp_path):
    def error(data, name="card.json", raw=False):
        folder = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        path = folder / name
        path.write_bytes(data) if raw else path.write_text(data)
        with pytest.raises(CatalogError) as err:
            load_card(path)
        assert err.value.path == str(path)
        return path, err.value

    path, e = error(b"\xff\xfe{}", raw=True)
    assert e.message == f"The model card {path} is not UTF-8 text (byte 0)."
    assert e.hint == "Save it as UTF-8; the other models still load."
    path, e = error("[1, 2]")
    assert e.message == f"The model card {path} is not a JSON object."
    path, e = error("[" * 100_000 + "]" * 100_000)
    assert e.message == f"The model card {path} is nested too deeply to read."
    assert e.hint == "Fix the file or remove it; the other models still load."
    path, e = error("{oops")
    assert e.message.startswith(f"The model card {path} is not valid JSON (")
    assert e.hint == "Fix the file or remove it; the other models still load."
    path, e = error(json.dumps(card(task="summon")))
    assert e.message.startswith(f"The model card {path} is invalid: task: ")
    assert e.hint == "Fix those fields; the other models still load."
    path, e = error(b" " * (16 << 20) + b"{}", raw=True)
    assert e.message == f"The model card {path} is larger than 16 MB."
    assert e.hint == "A card is a short JSON file; fix or remove it."
    missing = tmp_path / "none" / "card.json"
    with pytest.raises(CatalogError) as err:
        load_card(missing)
    assert err.value.message == f"Cannot read the model card {missing}: No such file or directory."
    assert err.value.path == str(missing)


def test_a_card_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "m" / "card.json"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(card()).encode())
    assert load_card(path).name == "edge-finder"


def test_a_card_that_cannot_be_read_is_reported_by_the_catalog(tmp_path):
    write(tmp_path / "good", card())
    (tmp_path / "folder-card" / "card.json").mkdir(parents=True)  # a folder named card.json
    cat = Catalog.load([tmp_path])
    assert [c.name for c in cat.cards] == ["edge-finder"]
    [e] = cat.errors
    assert e.path == str(tmp_path / "folder-card" / "card.json")
    assert e.message.startswith(f"Cannot read the model card {e.path}")


def test_duplicate_names_keep_the_first_and_say_both_files(tmp_path):
    write(tmp_path / "a", card(title="First"))
    write(tmp_path / "b", card(title="Second"))
    cat = Catalog.load([tmp_path])
    assert [c.title for c in cat.cards] == ["First"]
    [e] = cat.errors
    assert e.message == (f"Two model cards share the name 'edge-finder': "
                         f"{tmp_path / 'a' / 'card.json'} and {tmp_path / 'b' / 'card.json'}; "
                         "the first one is kept.")
    assert e.path == str(tmp_path / "b" / "card.json")


def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path):
    import gc
    write(tmp_path / "a", card())
    assert gc.isenabled()
    Catalog.load([tmp_path])
    assert gc.isenabled()
    gc.disable()
    try:
        Catalog.load([tmp_path])
        assert not gc.isenabled()
    finally:
        gc.enable()


# ---------------------------------------------------------------- the catalog

def three(tmp_path):
    write(tmp_path / "a", card())
    write(tmp_path / "b", card(name="zebra", title="Zebra Stripes", task="transform",
                               overview="Paints edges as stripes.", keywords=["Stripes"],
                               publishers=[{"name": "Zoo"}],
                               characteristics={"input_types": ["Image"],
                                                "output_types": ["image"], "cpu": False,
                                                "gpu": True}))
    write(tmp_path / "c", card(name="alpha", title="Alpha Mask", task="generate",
                               overview="Makes a mask with edges el-0 marked.",
                               keywords=["matte"], publishers=[{"name": "Zoo"}]))
    return Catalog.load([tmp_path])


def test_cards_are_in_title_order_and_looked_up_by_name(tmp_path):
    cat = three(tmp_path)
    assert [c.name for c in cat.cards] == ["alpha", "edge-finder", "zebra"]
    assert cat.get("zebra").title == "Zebra Stripes"
    with pytest.raises(NotFound) as err:  # a RunwayError and a KeyError
        cat.get("nope")
    assert err.value.args[0] == "no model 'nope' in the catalog"
    assert cat.publishers() == ["Acme Lab", "Zoo"]
    assert cat.keywords() == ["Stripes", "edges", "lines", "matte"]


def test_search_ranks_title_and_keyword_matches_first_then_by_title(tmp_path):
    cat = three(tmp_path)
    assert [c.name for c in cat.search()] == ["alpha", "edge-finder", "zebra"]
    assert [c.name for c in cat.search("  ")] == ["alpha", "edge-finder", "zebra"]
    # "edges" is a keyword of edge-finder only; the others have it in the overview.
    assert [c.name for c in cat.search("edges")] == ["edge-finder", "alpha", "zebra"]
    assert [c.name for c in cat.search("EDGES edges")] == ["edge-finder", "alpha", "zebra"]
    assert [c.name for c in cat.search("stripes edges")] == ["zebra"]
    assert [c.name for c in cat.search("mask edges")] == ["alpha"]
    assert [c.name for c in cat.search("el-0")] == ["alpha"]
    assert [c.name for c in cat.search("edges el-0")] == ["alpha"]
    assert cat.search("el-1") == [] and cat.search("nothing") == []


def test_search_filters(tmp_path):
    cat = three(tmp_path)
    names = lambda **kw: [c.name for c in cat.search(**kw)]  # noqa: E731
    assert names(task="transform") == ["zebra"]
    assert names(input_type="IMAGE") == ["alpha", "edge-finder", "zebra"]
    assert names(output_type="Image", gpu=False) == ["alpha", "edge-finder"]
    assert names(cpu=False) == ["zebra"] and names(cpu=True) == ["alpha", "edge-finder"]
    assert names(publisher="Zoo") == ["alpha", "zebra"]
    assert names(keyword="STRIPES") == ["zebra"] and names(keyword="") == names()
    assert names(names=["zebra", "edge-finder", "gone"]) == ["edge-finder", "zebra"]
    assert names(names=[]) == []
    assert names(words="edges", names=["alpha", "zebra"]) == ["alpha", "zebra"]
    assert names(words="el-0", publisher="Acme Lab") == []
    assert names(commercial_use=False) == []


def test_search_follows_a_changed_card_list(tmp_path):
    cat = three(tmp_path)
    assert [c.name for c in cat.search("matte")] == ["alpha"]
    cat.cards = cat.cards[1:]
    assert cat.search("matte") == []


# ---------------------------------------------------------------- specs from cards

def test_the_bundled_shelf_is_found_from_the_source_tree():
    folder = catalog.builtin_models_dir()
    assert folder == Path(catalog.__file__).resolve().parents[2] / "models"


def test_specs_from_a_folder_and_from_a_saved_file(tmp_path):
    from runway_addon.core.spec import ModelSpec, Protocol
    folder = tmp_path / "m"
    write(folder, card(runtime={"cog": "0.23.1", "python": "3.11", "predictor": "p.py:P"}))
    c = load_card(folder / "card.json")
    with pytest.raises(CatalogError) as err:
        catalog.load_spec(c)
    path = folder / ".cog" / "openapi_schema.json"
    assert err.value.message.startswith(f"cannot read the model's schema {str(path)!r}: ")
    assert err.value.hint == "Write it with 'build.py models schema'." and err.value.path == str(path)
    no_runtime = load_card(write(tmp_path / "n", card(name="plain")))
    with pytest.raises(CatalogError) as err:
        catalog.load_spec(no_runtime)
    assert err.value.message == "model 'plain' has no folder with a schema"
    assert err.value.path == str(tmp_path / "n")

    user = load_card(write(tmp_path / "u", card(name="mine", source={"kind": "url",
                                                                     "value": "http://h:1"})))
    saved = tmp_path / "u" / catalog.USER_SPEC_FILE
    with pytest.raises(CatalogError) as err:
        catalog.load_spec(user)
    assert err.value.message == (f"cannot read the model's saved spec {str(saved)!r}: "
                                 "No such file or directory")
    assert err.value.hint == "Add the model again to save its spec."
    assert err.value.path == str(saved)
    saved.write_text('{"protocol": "cog"}')
    with pytest.raises(CatalogError) as err:
        catalog.load_spec(user)
    assert err.value.message == (f"the model's saved spec {str(saved)!r} is invalid: "
                                 "commands: Field required")
    assert err.value.path == str(saved) and err.value.hint == "Add the model again to save its spec."
    spec = ModelSpec(protocol=Protocol.COG, commands=[{"name": "predict"}])
    saved.write_text(spec.model_dump_json())
    assert catalog.load_spec(user) == spec
