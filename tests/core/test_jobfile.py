"""The job file (core.jobfile), no Blender: valid jobs for every input source and
output target parse to what they say; invalid ones are refused naming the field and
the rule; farm-style frame lists; the published JSON Schema is the model's; every
example job in examples/jobs parses."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runway_addon.core import jobfile
from runway_addon.core.jobfile import JobFileError, parse, parse_frames

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "jobs").glob("*.json"))
SOURCES = ["render", "pass", "image", "texture", "strip", "text", "file", "value"]
TARGETS = ["IMAGE_EDITOR", "TEXTURE", "STRIP", "FILE", "TEXT", "OVERLAY", "OBJECTS"]


def job(**kw) -> dict:
    return {"version": 1, "model": {"catalog": "style-transfer"}, **kw}


def refused(data) -> JobFileError:
    with pytest.raises(JobFileError) as e:
        parse(data)
    return e.value


# ------------------------------------------------------------------ valid jobs

@pytest.mark.parametrize("given, expect", [
    ({"source": "render"}, {"source": "render"}),
    ({"source": "pass", "pass": "NORMAL"}, {"source": "pass", "pass_": "NORMAL"}),
    ({"source": "image", "image": "Photo"}, {"source": "image", "image": "Photo"}),
    ({"source": "texture"}, {"source": "texture"}),
    ({"source": "strip", "strip": "Frames"}, {"source": "strip", "strip": "Frames"}),
    ({"source": "text", "text": "Script"}, {"source": "text", "text": "Script"}),
    ({"source": "file", "path": "//in.png"}, {"source": "file", "path": "//in.png"}),
    ({"source": "value", "value": 0.5}, {"source": "value", "value": 0.5}),
    ({"value": "typed"}, {"source": "value", "value": "typed"}),
    (0.8, {"source": "value", "value": 0.8}),  # a bare value
    (False, {"source": "value", "value": False}),  # falsy values are values
    ({"value": {"a": 1}}, {"source": "value", "value": {"a": 1}}),  # an object as a value
    ({"a": 1}, {"source": "value", "value": {"a": 1}}),  # no source keys: a bare object
])
def test_each_input_source_parses(given, expect):
    parsed = parse(job(inputs={"x": given})).inputs["x"]
    for key, value in expect.items():
        assert getattr(parsed, key) == value, key


@pytest.mark.parametrize("target", TARGETS)
def test_each_output_target_parses(target):
    parsed = parse(job(outputs={"output": [{"target": target, "name": "N"},
                                           {"target": "FILE", "path": "//o_{frame:04d}",
                                            "format": "EXR", "replace": True}]}))
    first, second = parsed.outputs["output"]
    assert (first.target, first.name, first.replace, first.format) == (target, "N", False,
                                                                      "PNG8")
    assert (second.target, second.path, second.format, second.replace) == \
        ("FILE", "//o_{frame:04d}", "EXR", True)
    # One target alone, or just its name, is a list of one.
    assert parse(job(outputs={"output": {"target": target}})).outputs["output"][0].target \
        == target
    assert parse(job(outputs={"output": target})).outputs["output"][0].target == target


@pytest.mark.parametrize("model", [
    {"catalog": "style-transfer"}, {"folder": "//models/mine"},
    {"image": "r8.im/someone/model@sha256:abc"},
    {"url": "http://127.0.0.1:5000", "protocol": "cog"}, {"url": "http://host:9000"},
    {"replicate": "stability-ai/sdxl"},
])
def test_each_model_source_parses(model):
    parsed = parse({"model": model})
    assert parsed.model.kind == next(iter(model))
    assert getattr(parsed.model, parsed.model.kind) == next(iter(model.values()))


def test_defaults_and_whole_job():
    parsed = parse(job())
    assert (parsed.version, parsed.runtime, parsed.command, parsed.frames, parsed.save_blend,
            parsed.on_failure, parsed.replicas) == (1, None, None, None, False, "stop", 1)
    assert parsed.frame_list(default=7) == [7]
    full = parse(job(runtime="DOCKER_GPU", command="predict", options={"a": 1},
                     frames="1-3,5", save_blend="//out.blend", on_failure="skip", replicas=2))
    assert (full.runtime, full.command, full.options, full.save_blend, full.on_failure,
            full.replicas) == ("DOCKER_GPU", "predict", {"a": 1}, "//out.blend", "skip", 2)
    assert full.frame_list(default=7) == [1, 2, 3, 5]
    assert parse(job(frames=4)).frame_list(default=1) == [4]  # a number is one frame
    assert parse(job(save_blend=True)).save_blend is True


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("data, field, words", [
    ({"model": {}}, "model", "exactly one of catalog, folder, image, url, replicate "
                             "(given: none)"),
    ({"model": {"catalog": "a", "folder": "b"}}, "model", "(given: catalog, folder)"),
    ({"model": {"catalog": "a", "protocol": "cog"}}, "model", "protocol goes with url only"),
    ({"inputs": {"image": {"source": "pass"}}}, "inputs.image", "source 'pass' needs pass"),
    ({"inputs": {"image": {"source": "image"}}}, "inputs.image", "source 'image' needs image"),
    ({"inputs": {"image": {"source": "strip"}}}, "inputs.image", "source 'strip' needs strip"),
    ({"inputs": {"image": {"source": "file"}}}, "inputs.image", "source 'file' needs path"),
    ({"inputs": {"t": {"source": "text"}}}, "inputs.t", "source 'text' needs text"),
    ({"inputs": {"image": {"path": "x.png"}}}, "inputs.image", "give a value, or a source"),
    ({"inputs": {"image": {"source": "pass", "pass": "SHADOW"}}}, "inputs.image.pass",
     "'COMBINED'"),
    ({"inputs": {"image": {"source": "camera"}}}, "inputs.image.source", "'render'"),
    ({"inputs": {"image": {"source": "render", "colour": 1}}}, "inputs.image.colour",
     "Extra inputs are not permitted"),
    ({"outputs": {"output": [{"target": "VIEWPORT"}]}}, "outputs.output.0.target",
     "'IMAGE_EDITOR', 'TEXTURE', 'STRIP', 'FILE', 'TEXT', 'OVERLAY' or 'OBJECTS'"),
    ({"outputs": {"output": [{"target": "FILE", "format": "GIF"}]}},
     "outputs.output.0.format", "'PNG8'"),
    ({"outputs": {"output": [{"target": "FILE", "pth": "x"}]}}, "outputs.output.0.pth",
     "Extra inputs are not permitted"),
    ({"bogus": 1}, "bogus", "Extra inputs are not permitted"),
    ({"version": 2}, "version", "Input should be 1"),
    ({"runtime": "CLOUD"}, "runtime", "'LOCAL_PROCESS'"),
    ({"on_failure": "retry"}, "on_failure", "'stop' or 'skip'"),
    ({"replicas": 0}, "replicas", "greater than or equal to 1"),
    ({"replicas": 9}, "replicas", "less than or equal to 8"),
    ({"frames": "3-1"}, "frames", "range 3-1 goes backwards"),
    ({"frames": "a-b"}, "frames", "'a-b' is not a frame or range"),
    ({"frames": "1-3,,5"}, "frames", "'' is not a frame or range"),
    ({"frames": ""}, "frames", "'' is not a frame or range"),
    ({"frames": "1-200000"}, "frames", "more than 100000 frames"),
    ({"frames": True}, "frames", "give frames as a number or a string"),
    ({"frames": [1, 2]}, "frames", "give frames as a number or a string"),
])
def test_invalid_jobs_name_the_field_and_the_rule(data, field, words):
    data = {**job(), **data}
    e = refused(data)
    assert e.field == field, e.message
    assert words in e.message, e.message
    assert e.message.startswith(f"job: {field}: "), e.message
    assert "job.schema.json" in e.hint


def test_many_problems_are_counted_and_not_a_dict_is_refused():
    e = refused({"model": {}, "bogus": 1, "frames": "x"})
    assert "(and 2 more)" in e.message
    e = refused(["not", "a", "job"])
    assert e.field == "" and "the job" in e.message


def test_load_names_the_file(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(job(frames="2-3")))
    assert jobfile.load(good).frame_list(1) == [2, 3]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(job(frames="9-1")))
    with pytest.raises(JobFileError, match=r"^bad\.json: frames: range 9-1 goes backwards"):
        jobfile.load(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": ')
    with pytest.raises(JobFileError, match=r"broken\.json is not JSON"):
        jobfile.load(broken)
    with pytest.raises(JobFileError, match="cannot read the job file"):
        jobfile.load(tmp_path / "missing.json")


# ------------------------------------------------------------------ frames


@pytest.mark.parametrize("text, frames", [
    ("1-3,5,9-12", [1, 2, 3, 5, 9, 10, 11, 12]),
    ("5", [5]),
    ("1..4", [1, 2, 3, 4]),
    (" 2 - 4 , 1 ", [2, 3, 4, 1]),  # in the order given
    ("1-5,3-7,2", [1, 2, 3, 4, 5, 6, 7]),  # no repeats
    ("-2-1", [-2, -1, 0, 1]),
    ("7-7", [7]),
])
def test_frame_lists(text, frames):
    assert parse_frames(text) == frames


@pytest.mark.parametrize("text", ["3-1", "a-b", "1-", "-", "1-3-5", "1,,2", "", "1.5",
                                  "1:3"])
def test_bad_frame_lists(text):
    with pytest.raises(ValueError):
        parse_frames(text)


# ------------------------------------------------------------------ schema and examples


def test_published_schema_is_the_models():
    published = json.loads((ROOT / "docs" / "job.schema.json").read_text(encoding="utf-8"))
    assert published == jobfile.schema(), "run: python3 build.py jobschema"
    assert (ROOT / "docs" / "job.schema.json").read_text(encoding="utf-8") == \
        jobfile.schema_text()
    assert published["additionalProperties"] is False
    assert published["required"] == ["model"]
    assert set(published["properties"]) == {"version", "model", "runtime", "command",
                                            "options", "inputs", "outputs", "frames",
                                            "save_blend", "on_failure", "replicas"}
    source = published["$defs"]["InputSource"]["properties"]
    assert "pass" in source and "pass_" not in source  # the name a job file uses
    assert published["$defs"]["OutputTarget"]["properties"]["target"]["enum"] == TARGETS


def test_build_jobschema_writes_the_schema(tmp_path, monkeypatch):
    """``build.py jobschema`` writes docs/job.schema.json (here into a copy of the path)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_under_test", ROOT / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    target = tmp_path / "job.schema.json"
    monkeypatch.setattr(build, "JOB_SCHEMA", target)
    monkeypatch.setattr(build.envs, "ensure", lambda env: sys.executable)
    monkeypatch.setattr(build, "ROOT", ROOT)
    assert build.main(["jobschema"]) == 0
    assert json.loads(target.read_text(encoding="utf-8")) == jobfile.schema()


def test_every_example_parses_and_all_sources_and_targets_have_one():
    assert EXAMPLES, "examples/jobs/*.json"
    sources, targets = set(), set()
    for path in EXAMPLES:
        parsed = jobfile.load(path)
        assert parsed.model.catalog, f"{path.name}: examples use shelf models"
        assert (ROOT / "models" / parsed.model.catalog / "card.json").is_file(), path.name
        sources |= {i.source for i in parsed.inputs.values()}
        targets |= {t.target for ts in parsed.outputs.values() for t in ts}
    assert sources == set(SOURCES)
    assert targets == set(TARGETS)
    readme = (ROOT / "examples" / "jobs" / "README.md").read_text(encoding="utf-8")
    for path in EXAMPLES:
        assert path.name in readme, f"{path.name} is not in examples/jobs/README.md"
