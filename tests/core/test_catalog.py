import json

import pytest

from runway_addon.core import catalog
from runway_addon.core.catalog import Catalog, CatalogError, load_card


def card(**over):
    base = {
        "name": "edge-finder", "title": "Edge Finder", "task": "identify",
        "overview": "Finds edges in a photograph.",
        "licence": {"code": [{"component": "finder", "spdx": "MIT"}],
                    "weights": [{"component": "weights", "spdx": "Apache-2.0"}],
                    "commercial_use": {"allowed": True}, "summary": "MIT code"},
        "publishers": [{"name": "Acme Lab"}],
        "characteristics": {"input_types": ["image"], "output_types": ["image"],
                            "cpu": True, "gpu": False},
        "keywords": ["edges", "lines"],
    }
    base.update(over)
    return base


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
