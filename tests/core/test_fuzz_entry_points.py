"""Property-based fuzzing of core's public entry points (issue 11): whatever a model server,
a card, a job file or a caller hands in, only a RunwayError subclass comes out, with a
non-empty message that shows no registered secret. The hand-made cases live in
test_faults.py; these generate what those miss. Derandomized so CI is repeatable."""
from __future__ import annotations

import base64
import json
import math
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runway_addon.core import codecs, jobfile
from runway_addon.core.catalog import (Catalog, CatalogError, load_card, load_folder_spec,
                                      load_saved_spec)
from runway_addon.core.client import connect
from runway_addon.core.codecs import WireContext, decode_value, encode_value
from runway_addon.core.errors import (CodecError, RunwayError, ServerError,
                                      SpecValidationError, UsageError, register_secret)
from runway_addon.core.protocols.cog import CogClient, spec_from_openapi
from runway_addon.core.protocols.replicate import ReplicateClient
from runway_addon.core.protocols.runway import (HostedRunwayClient, RunwayClient,
                                                field_from_runway, spec_from_meta)
from runway_addon.core.spec import (AnyField, ArrayField, BooleanField, CategoryField,
                                    FileField, ImageBoundingBoxField, ImageField,
                                    ImageLandmarksField, ImagePointField, IntegerField,
                                    NumberField, SecretField, SegmentationField, TextField,
                                    VectorField)
from runway_addon.core.render_passes import PASS_CHANNELS, pass_image, read_pass
from runway_addon.core.runtimes.cog_yaml import load_cog_yaml
from runway_addon.core.tokens import TokenStore
from runway_addon.core.user_models import validate_card
from runway_addon.core.validation import validate_inputs, validate_value
from tests.helpers import example_card
from runway_addon.core.workspaces import RecentStore, WorkspaceStore
from tests.servers.hostile import HostileServer, cog_schema, runway_meta

SECRET = "fuzz-secret-7Qx9Lm2Zp4"  # generated documents echo it; no message may show it
register_secret(SECRET)


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def only_runway_errors(fn, *args, **kwargs):
    """``fn``'s result, or None when it raised a RunwayError with a usable message; any
    other exception propagates and fails the example (hypothesis shrinks it)."""
    try:
        return fn(*args, **kwargs)
    except RunwayError as exc:
        text = f"{exc} {exc.details}"
        assert exc.message.strip(), f"empty message from {type(exc).__name__}"
        assert SECRET not in text, f"the secret leaked: {text[:300]}"
        return None


def exercise(client, options) -> None:
    """Every call of a client against whatever its server answers; then close it."""
    try:
        only_runway_errors(client.health)
        only_runway_errors(client.spec)
        only_runway_errors(client.setup, options)
        only_runway_errors(client.run, {"text": "hi"})
        only_runway_errors(client.cancel, "run-1")
    finally:
        client.close()


# --------------------------------------------------------------------------- JSON shapes

huge = st.sampled_from([10 ** 400, -(10 ** 400), 2 ** 64, 1e308, -1e308, math.inf, -math.inf,
                        math.nan, 0.5, -1, 0, 1, 2 ** 31])
leaf = (st.none() | st.booleans() | st.integers() | huge | st.floats()
        | st.text(max_size=12) | st.just(SECRET)
        | st.sampled_from(["", "string", "integer", "number", "boolean", "array", "object",
                           "uri", "password", "image", "#/components/schemas/Input"]))


def json_like(keys=st.text(max_size=8)):
    return st.recursive(leaf, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(keys, kids, max_size=4), max_leaves=16)


junk = json_like()
REFS = st.sampled_from(["#/components/schemas/Input", "#/components/schemas/Output",
                        "#/components/schemas/A", "#/components/schemas/B", "#/x/y",
                        "#/", "#", "other.json#/A", "#/components/schemas/A/allOf/0", ""])


def prop(depth: int = 2):
    """A JSON-schema property: mostly the right keys, often the wrong values."""
    items = prop(depth - 1) if depth > 0 else junk
    return st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["string", "integer", "number", "boolean", "array",
                                 "object", None, 3, ["string"]]),
        "format": st.sampled_from(["uri", "password", "binary", None, 1]),
        "enum": st.lists(leaf, max_size=3) | junk,
        "default": junk,
        "minimum": huge | junk, "maximum": huge | junk,
        "minLength": huge | junk, "maxLength": huge | junk,
        "minItems": huge | junk, "maxItems": huge | junk,
        "pattern": st.sampled_from(["(a+)+$", "[", "^x*$", "\\"]) | junk,
        "items": items | junk,
        "allOf": st.lists(st.fixed_dictionaries({"$ref": REFS}) | junk, max_size=3) | junk,
        "$ref": REFS | junk,
        "x-order": huge | junk,
        "x-cog-accept": st.sampled_from(["image/*", ".png,.wav", "", "audio/wav"]) | junk,
        "x-cog-secret": st.booleans(),
        "x-runway-type": junk,
        "title": junk, "description": junk, "deprecated": junk,
    })


def openapi_docs():
    props = st.dictionaries(st.text(max_size=6) | st.just(SECRET), prop() | junk, max_size=4)
    schemas = st.fixed_dictionaries({
        "Input": st.fixed_dictionaries({"properties": props | junk},
                                       optional={"type": junk, "required":
                                                 st.lists(st.text(max_size=6)) | junk,
                                                 "allOf": junk}),
    }, optional={"Output": prop() | junk, "A": prop() | junk, "B": prop() | junk})
    doc = st.fixed_dictionaries({"components": st.fixed_dictionaries(
        {"schemas": schemas | junk})}, optional={"info": junk, "openapi": junk})
    return doc | junk


@fuzz(250)
@given(doc=openapi_docs(), version=st.none() | st.text(max_size=5) | junk)
def test_spec_from_openapi_only_raises_runway_errors(doc, version):
    only_runway_errors(spec_from_openapi, doc, version=version)


RUNWAY_TYPES = st.sampled_from(["image", "text", "number", "boolean", "category", "vector",
                                "array", "file", "segmentation", "image_point",
                                "image_bounding_box", "image_landmarks", "any", "nope"])


def runway_field(depth: int = 1):
    item = runway_field(depth - 1) if depth > 0 else junk
    return st.fixed_dictionaries({"type": RUNWAY_TYPES | junk}, optional={
        "name": st.text(max_size=6) | junk, "default": junk, "description": junk,
        "min": huge | junk, "max": huge | junk, "step": huge | junk,
        "minLength": huge | junk, "maxLength": huge | junk, "length": huge | junk,
        "oneOf": st.lists(leaf, max_size=3) | junk, "itemType": item,
        "channels": huge | junk, "width": huge | junk, "height": huge | junk,
        "labels": st.lists(st.text(max_size=3), max_size=3) | junk,
        "labelToId": st.dictionaries(st.text(max_size=3), huge | junk, max_size=3) | junk,
        "labelToColor": st.dictionaries(st.text(max_size=3), junk, max_size=3) | junk,
        "connections": st.lists(st.lists(leaf, max_size=3), max_size=3) | junk,
        "samplingMean": junk, "samplingStd": junk, "isDirectory": junk,
        "extension": junk, "defaultOutputFormat": junk,
    })


def runway_metas():
    command = st.fixed_dictionaries({}, optional={
        "name": st.text(max_size=6) | junk, "description": junk,
        "inputs": st.lists(runway_field() | junk, max_size=3) | junk,
        "outputs": st.lists(runway_field() | junk, max_size=3) | junk})
    meta = st.fixed_dictionaries({"commands": st.lists(command | junk, max_size=3)}, optional={
        "options": st.lists(runway_field() | junk, max_size=3) | junk,
        "GPU": junk, "modelSDKVersion": junk, "millisRunning": junk})
    return meta | junk


@fuzz(200)
@given(meta=runway_metas())
def test_runway_meta_parser_only_raises_runway_errors(meta):
    only_runway_errors(spec_from_meta, meta)


# --------------------------------------------------------------------------- validation

FIELDS = [
    ImageField(name="image"), TextField(name="text", pattern="^a+$", max_length=5),
    NumberField(name="number", min=0, max=1), IntegerField(name="integer", min=-3),
    BooleanField(name="boolean"), CategoryField(name="category", choices=["a", 1, 2.5]),
    VectorField(name="vector", length=3), ArrayField(name="array", item=TextField(name="t")),
    FileField(name="file"), SegmentationField(name="seg", labels=["bg", "fg"]),
    ImagePointField(name="point"), ImageBoundingBoxField(name="box"),
    ImageLandmarksField(name="landmarks", length=2), SecretField(name="secret"),
    AnyField(name="any"),
]


def _cog_fields(props: dict) -> list:
    """The input fields Cog's parser makes of these properties (none when it refuses)."""
    try:
        return spec_from_openapi(cog_schema(inputs=props)).commands[0].inputs
    except RunwayError:
        return []


cog_field_lists = st.dictionaries(st.text(min_size=1, max_size=4), prop(1), min_size=1,
                                  max_size=2).map(_cog_fields)
fields = (st.sampled_from(FIELDS) | runway_field().map(field_from_runway)
          | cog_field_lists.filter(bool).map(lambda fs: fs[0]))
values = junk | st.lists(huge, max_size=4) | st.lists(st.lists(huge, max_size=3), max_size=3) \
    | st.builds(np.zeros, st.tuples(st.integers(0, 3), st.integers(0, 3))) \
    | st.tuples(huge, huge)


@fuzz(100)
@given(fs=st.lists(fields, max_size=4), data=st.data(), protocol=st.sampled_from(
    [None, "runway", "cog"]))
def test_validation_of_generated_specs_and_values_only_raises_spec_errors(fs, data, protocol):
    names = [f.name for f in fs] + ["extra", SECRET]
    vals = data.draw(st.dictionaries(st.sampled_from(names), values, max_size=5) | junk)
    for f in fs:
        issues = validate_value(f, data.draw(values))  # a list, never an exception
        assert isinstance(issues, list)
    try:
        validate_inputs(fs, vals, protocol=protocol)
    except SpecValidationError as exc:
        assert exc.message.strip()


def test_an_array_is_not_a_category_choice():
    # Found by the fuzzer: comparing an array with each choice raised numpy's ValueError.
    field = CategoryField(name="category", choices=["a", 1, 2.5])
    [issue] = validate_value(field, np.zeros((1, 2)))
    assert issue.rule == "choices"
    with pytest.raises(SpecValidationError, match="category"):
        validate_inputs([field], {"category": np.zeros((1, 2))})


# --------------------------------------------------------------------------- codecs

CODEC_FIELDS = FIELDS + [ArrayField(name="images", item=ImageField(name="i"))]
wire_values = (junk | st.binary(max_size=64).map(lambda b: codecs.to_data_uri(b, "image/png"))
               | st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
               | st.lists(huge | st.text(max_size=4), max_size=4)
               | st.lists(st.lists(huge, max_size=3), max_size=3))


@fuzz(120)
@given(field=st.sampled_from(CODEC_FIELDS) | fields,
       wire=wire_values, paths=st.booleans())
def test_codecs_decode_and_encode_only_raise_codec_errors(field, wire, paths):
    ctx = WireContext(files_as_paths=paths, fetch=lambda url: b"\x89PNG garbage")
    only_runway_errors(decode_value, field, wire, ctx)
    only_runway_errors(encode_value, field, wire, ctx)


def _valid_images() -> dict[str, bytes]:
    img = np.random.default_rng(3).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    rgba = np.random.default_rng(4).random((4, 4, 4), dtype=np.float32)
    return {"png": codecs.encode_image_bytes(img, "PNG"),
            "png16": codecs.encode_image_bytes(img.astype(np.uint16) * 257, "PNG"),
            "jpeg": codecs.encode_image_bytes(img, "JPEG"),
            "exr": codecs.encode_exr(rgba)}


VALID = _valid_images()


@st.composite
def mutated_images(draw):
    blob = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        at = draw(st.integers(0, max(len(blob) - 1, 0)))
        if how == "flip" and blob:
            blob[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del blob[at:at + draw(st.integers(1, 64))]
        elif how == "insert":
            blob[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif blob:
            blob[at:at + 4] = b"\xff\xff\xff\x7f"  # a huge length or size field
    return bytes(blob)


@fuzz(500)
@given(blob=mutated_images() | st.binary(max_size=200))
def test_decode_image_bytes_of_random_and_mutated_images_only_raises_codec_errors(blob):
    out = only_runway_errors(codecs.decode_image_bytes, blob)
    if out is not None:  # a mutation that still decodes is a real image
        assert out.ndim == 3 and out.size > 0
    only_runway_errors(decode_value, ImageField(name="im"), codecs.to_data_uri(blob, "image/png"))


def _plane(h: int, w: int, dtype, fill: float) -> np.ndarray:
    with np.errstate(all="ignore"):  # 1e10 as float16 is inf, on purpose
        return np.full((h, w), fill, dtype=dtype)


plane = st.builds(_plane, st.integers(0, 4), st.integers(0, 4),
                  st.sampled_from([np.float32, np.float16, np.float64]),
                  st.sampled_from([0.0, 1e10, -1.0, math.nan, math.inf, 0.5]))


@st.composite
def pass_planes(draw):
    """A pass id and planes holding most of its channels, each of its own size (a
    multi-part EXR whose parts disagree), plus strays."""
    pass_id = draw(st.sampled_from(sorted(PASS_CHANNELS)))
    name, chans = PASS_CHANNELS[pass_id]
    keep = draw(st.lists(st.sampled_from(chans), min_size=len(chans) - 1, unique=True))
    out = {f"ViewLayer.{name}.{ch}": draw(plane) for ch in keep}
    out.update(draw(st.dictionaries(st.sampled_from(["R", "x.Depth.Z", "a.Mist.Z"]), plane,
                                    max_size=2)))
    return pass_id, out


@fuzz(120)
@given(case=pass_planes(), blob=mutated_images())
def test_render_passes_of_generated_planes_and_files_only_raise_codec_errors(case, blob):
    pass_id, planes = case
    with np.errstate(all="ignore"), tempfile.TemporaryDirectory() as tmp:
        only_runway_errors(pass_image, planes, pass_id)
        (Path(tmp) / "render.exr").write_bytes(blob)
        only_runway_errors(read_pass, str(Path(tmp) / "render.exr"), pass_id)


def test_a_pass_whose_channels_differ_in_size_is_a_codec_error():
    # Found by the fuzzer: np.dstack's ValueError came out of pass_image (the parts of a
    # multi-part EXR each have their own data window).
    planes = {"ViewLayer.DiffCol.R": np.zeros((0, 0), np.float32),
              "ViewLayer.DiffCol.G": np.zeros((0, 0), np.float32),
              "ViewLayer.DiffCol.B": np.zeros((0, 1), np.float32)}
    with pytest.raises(CodecError, match=r"DiffCol channels differ in size \(0x0, 0x0, 0x1\)"):
        pass_image(planes, "DIFFUSE_COLOR")


# --------------------------------------------------------------------------- catalog

GOOD_CARD = example_card()
CARD_KEYS = st.sampled_from(sorted(GOOD_CARD) + ["source", "runtime", "versions", "files",
                                                 "gallery", "templates", "performance",
                                                 "folder", "attribution"])


@st.composite
def broken_cards(draw) -> bytes:
    how = draw(st.sampled_from(["fields", "junk", "bytes", "deep"]))
    if how == "fields":  # the good card with some fields replaced by junk
        card = dict(GOOD_CARD, name="broken")
        for key in draw(st.lists(CARD_KEYS, min_size=1, max_size=4, unique=True)):
            card[key] = draw(junk)
        return json.dumps(card).encode()
    if how == "junk":
        return json.dumps(draw(junk)).encode()
    if how == "deep":
        n = draw(st.integers(50, 5000))
        return b'{"name": ' + b"[" * n + b"]" * n + b"}"
    return draw(st.binary(max_size=100)) + b"\xff\xfe\x80"  # never UTF-8


@fuzz(150)
@given(cards=st.lists(broken_cards(), min_size=1, max_size=4))
def test_catalog_reports_broken_cards_and_loads_the_good_one(cards):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "good").mkdir()
        (root / "good" / "card.json").write_text(json.dumps(GOOD_CARD))
        for i, blob in enumerate(cards):
            (root / f"c{i}").mkdir()
            (root / f"c{i}" / "card.json").write_bytes(blob)
        cat = only_runway_errors(Catalog.load, [root])
        assert cat is not None, "Catalog.load itself raised"
        assert "edge-finder" in [c.name for c in cat.cards]
        # Every folder is either a card or a reported error (a junk card that happens to
        # be valid loads; one sharing the good card's name is reported as a duplicate).
        assert len(cat.cards) + len(cat.errors) == len(cards) + 1
        for err in cat.errors:
            assert isinstance(err, RunwayError) and err.message.strip()
            assert SECRET not in str(err)
        for i in range(len(cards)):  # load_card itself, not only Catalog.load's safety net
            only_runway_errors(load_card, root / f"c{i}" / "card.json")


spec_files = (st.binary(max_size=80) | st.binary(max_size=40).map(lambda b: b + b"\xff\xfe")
              | openapi_docs().map(lambda d: json.dumps(d).encode())
              | junk.map(lambda d: json.dumps(d).encode())
              | st.integers(100, 20000).map(lambda n: b"[" * n + b"]" * n))


@fuzz(120)
@given(blob=spec_files)
def test_schema_and_saved_spec_files_only_raise_catalog_errors(blob):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / ".cog").mkdir()
        (Path(tmp) / ".cog" / "openapi_schema.json").write_bytes(blob)
        (Path(tmp) / "spec.json").write_bytes(blob)
        only_runway_errors(load_folder_spec, tmp)
        only_runway_errors(load_saved_spec, Path(tmp) / "spec.json")


def test_schema_file_nested_too_deeply_is_a_catalog_error(tmp_path):
    # Found by the fuzzer: json.loads' RecursionError came out of load_folder_spec.
    (tmp_path / ".cog").mkdir()
    (tmp_path / ".cog" / "openapi_schema.json").write_bytes(b"[" * 1989 + b"]" * 1989)
    with pytest.raises(CatalogError, match="nested too deeply"):
        load_folder_spec(tmp_path)


def test_saved_spec_that_is_not_utf8_is_a_catalog_error(tmp_path):
    # Found by the fuzzer: UnicodeDecodeError (a ValueError) came out of load_saved_spec.
    (tmp_path / "spec.json").write_bytes(b"\x80")
    with pytest.raises(CatalogError, match="is not UTF-8 text"):
        load_saved_spec(tmp_path / "spec.json")


# --------------------------------------------------------------------------- user folder

store_files = (st.binary(max_size=60) | junk.map(lambda d: json.dumps(d).encode())
               | st.fixed_dictionaries({"workspaces": junk, "models": junk, "format": junk})
               .map(lambda d: json.dumps(d).encode())
               | st.integers(100, 20000).map(lambda n: b"[" * n + b"]" * n))


@fuzz(150)
@given(blob=store_files)
def test_user_folder_stores_survive_generated_files(blob):
    # A damaged store must not take the add-on down: it reads as empty (set aside and
    # reported for workspaces and recent models), and writing afterwards works.
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("workspaces.json", "recent.json", "tokens.json"):
            (Path(tmp) / name).write_bytes(blob)
        spaces, recent = WorkspaceStore(tmp), RecentStore(tmp)
        assert isinstance(only_runway_errors(spaces.load), list)
        assert isinstance(only_runway_errors(recent.load), dict)
        recent.record("m", 1.0)
        assert recent.load() == {"m": 1.0}
        tokens = TokenStore(Path(tmp) / "tokens.json")
        got = only_runway_errors(tokens.get, "x", env_names=[])
        assert got is None or isinstance(got, str)
        tokens.set("x", SECRET)
        assert tokens.get("x", env_names=[]) == SECRET


def test_stores_nested_too_deeply_read_as_empty(tmp_path):
    # Found by the fuzzer: json.loads' RecursionError came out of each store's read.
    deep = b"[" * 1988 + b"]" * 1988
    for name in ("workspaces.json", "recent.json", "tokens.json"):
        (tmp_path / name).write_bytes(deep)
    spaces = WorkspaceStore(tmp_path)
    assert spaces.load() == [] and "could not be read" in spaces.problem
    assert RecentStore(tmp_path).load() == {}
    assert TokenStore(tmp_path / "tokens.json").get("x", env_names=[]) is None


@fuzz(150)
@given(blob=st.binary(max_size=80) | st.text(max_size=80).map(str.encode)
       | st.sampled_from([b"predict: predict.py:P\nbuild:\n  python_version: '3.11'\n",
                          b"build:\n  python_packages:\n    - x==1\n", b"predict:", b"\xff"]))
def test_cog_yaml_of_generated_bytes_only_raises_runtime_failed(blob):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cog.yaml").write_bytes(blob)
        only_runway_errors(load_cog_yaml, tmp)


@fuzz(150)
@given(card=st.fixed_dictionaries({}, optional={k: junk for k in sorted(GOOD_CARD)})
       .map(lambda over: dict(GOOD_CARD, **over)) | junk)
def test_validate_card_of_generated_cards_only_raises_catalog_errors(card):
    only_runway_errors(validate_card, card)


def test_validate_card_of_a_non_object_or_a_too_deep_card_is_a_catalog_error():
    # Found by the fuzzer: validate_card(None) raised AttributeError.
    with pytest.raises(CatalogError, match="NoneType, not an object"):
        validate_card(None)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(CatalogError):
        validate_card(dict(GOOD_CARD, keywords=deep))


# --------------------------------------------------------------------------- job files

JOB_KEYS = st.sampled_from(["model", "inputs", "outputs", "command", "options", "frames",
                            "runtime", "name", "setup", "catalog", "url", "source", "pass",
                            "target", "value", "protocol"])
jobs = st.recursive(leaf, lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(JOB_KEYS | st.text(max_size=4), kids, max_size=4),
                    max_leaves=20)


@fuzz(250)
@given(data=jobs | st.fixed_dictionaries({"model": st.fixed_dictionaries(
    {}, optional={"catalog": junk, "url": junk, "protocol": junk}),
    "inputs": st.dictionaries(st.text(max_size=4), jobs, max_size=3),
    "outputs": st.dictionaries(st.text(max_size=4), jobs, max_size=3)}))
def test_job_parse_only_raises_job_file_errors(data):
    only_runway_errors(jobfile.parse, data)


@fuzz(200)
@given(blob=st.binary(max_size=80) | jobs.map(lambda d: json.dumps(d).encode())
       | st.integers(100, 20000).map(lambda n: b"[" * n + b"]" * n))
def test_job_load_of_generated_files_only_raises_job_file_errors(blob):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.json"
        path.write_bytes(blob)
        only_runway_errors(jobfile.load, path)


def test_job_file_that_is_not_utf8_is_a_job_file_error(tmp_path):
    path = tmp_path / "job.json"
    path.write_bytes(b'{"model": "\xff"}')
    with pytest.raises(jobfile.JobFileError, match="job.json is not UTF-8 text"):
        jobfile.load(path)


def test_job_file_nested_too_deeply_is_a_job_file_error(tmp_path):
    path = tmp_path / "job.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(jobfile.JobFileError, match="job.json is nested too deeply"):
        jobfile.load(path)


# --------------------------------------------------------------------------- clients

STATUSES = st.sampled_from([200, 201, 202, 204, 301, 400, 401, 403, 404, 409, 413, 422, 429,
                            500, 502, 503]) | st.integers(100, 599)
HEADER_SETS = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/html", "application/x",
                                     "image/png", "", "application/json; charset=latin-1"]),
    "Retry-After": st.sampled_from(["0", "-1", "abc", "1e9", "nan", "Wed, 21 Oct 2015"]),
    "Location": st.sampled_from(["/", "http://127.0.0.1:1/", "ftp://x", "//"]),
    "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity"]),
    # Any latin-1 text on one line (a header cannot carry more).
    "Link": junk.map(lambda v: " ".join(str(v).encode("latin-1", "replace")
                                       .decode("latin-1").splitlines())),
})
bodies = (junk.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=120)
          | openapi_docs().map(lambda v: json.dumps(v).encode())
          | runway_metas().map(lambda v: json.dumps(v).encode())
          | st.sampled_from([b"", b"{", b"null", b"[]", b'{"status": "succeeded"}',
                             b'{"status": "failed", "error": "%s"}' % SECRET.encode(),
                             b'{"status": "succeeded", "output": "data:,x"}',
                             b'{"status": "RUNNING"}', b'{"text": 3}']))


class _Answers:
    """What the loopback server says next: one generated answer on one path, the
    well-behaved documents everywhere else."""

    def __init__(self, good: dict):
        self.good, self.lock = good, threading.Lock()
        self.path, self.answer = None, None

    def handler(self, req):
        with self.lock:
            path, answer = self.path, self.answer
        here = req.path.split("?", 1)[0]
        if answer is not None and (path == "*" or here.startswith(path)):
            status, body, headers = answer
            content_type = headers.pop("Content-Type", "application/json")
            req.raw(status, body, dict(headers), content_type=content_type)
        elif here in self.good:
            req.json(self.good[here])
        else:
            req.json({"detail": "Not Found"}, 404)


@pytest.fixture(scope="module")
def cog_server():
    answers = _Answers({"/openapi.json": cog_schema(),
                        "/health-check": {"status": "READY", "setup": {"status": "succeeded"}},
                        "/": {"cog_version": "0.9"}})
    server = HostileServer()
    server.prefix("/", answers.handler)
    yield server, answers
    server.stop()


@pytest.fixture(scope="module")
def runway_server():
    answers = _Answers({"/meta": runway_meta(), "/": runway_meta(),
                        "/healthcheck": {"status": "RUNNING"}})
    server = HostileServer()
    server.prefix("/", answers.handler)
    yield server, answers
    server.stop()


answers = st.tuples(STATUSES, bodies, HEADER_SETS)


@pytest.mark.network
@fuzz(100)
@given(path=st.sampled_from(["*", "/health-check", "/openapi.json", "/predictions"]),
       answer=answers)
def test_cog_client_decodes_generated_answers_into_runway_errors_only(cog_server, path,
                                                                     answer):
    server, ans = cog_server
    with ans.lock:
        ans.path, ans.answer = path, (answer[0], answer[1], dict(answer[2]))
    client = CogClient(server.url, token=SECRET, timeout=3, busy_timeout=0.2,
                       health_timeout=2)
    client.cancel_grace = 0.2
    try:
        only_runway_errors(client.health)
        only_runway_errors(client.spec)
        only_runway_errors(client.run, {"text": "hi"})
        only_runway_errors(client.cancel, "run-1")
    finally:
        client.close()


@pytest.mark.network
@fuzz(100)
@given(path=st.sampled_from(["*", "/healthcheck", "/meta", "/echo", "/cancel", "/setup"]),
       answer=answers, options=st.dictionaries(st.text(max_size=4), junk, max_size=2))
def test_runway_client_decodes_generated_answers_into_runway_errors_only(runway_server, path,
                                                                        answer, options):
    server, ans = runway_server
    with ans.lock:
        ans.path, ans.answer = path, (answer[0], answer[1], dict(answer[2]))
    exercise(RunwayClient(server.url, token=SECRET, timeout=3, connect_timeout=2,
                          health_timeout=2), options)


@pytest.mark.network
def test_setup_answered_404_without_an_error_text_says_so(runway_server):
    # Found by the fuzzer: a bare 404 to POST /setup gave a ServerError with no message.
    server, ans = runway_server
    with ans.lock:
        ans.path, ans.answer = "/setup", (404, b'{"detail": "Not Found"}', {})
    client = RunwayClient(server.url, timeout=3)
    try:
        with pytest.raises(ServerError, match=r"no setup route \(HTTP 404\)") as err:
            client.setup({})
        assert err.value.status == 404
    finally:
        client.close()


@pytest.fixture(scope="module")
def hosted_server():
    answers = _Answers({"/v1": {"status": "running"}, "/v1/": {"status": "running"},
                        "/v1/info": runway_meta()["commands"][0],
                        "/v1/models/a/b": {"owner": "a", "name": "b"},
                        "/v1/models/a/b/versions/v1": {"id": "v1",
                                                       "openapi_schema": cog_schema()}})
    server = HostileServer()
    server.prefix("/", answers.handler)
    yield server, answers
    server.stop()


@pytest.mark.network
@fuzz(60)
@given(path=st.sampled_from(["*", "/v1/info", "/v1/query", "/v1/models", "/v1/predictions"]),
       answer=answers, options=st.dictionaries(st.text(max_size=4), junk, max_size=2))
def test_hosted_and_replicate_clients_decode_generated_answers_into_runway_errors_only(
        hosted_server, path, answer, options):
    server, ans = hosted_server
    with ans.lock:
        ans.path, ans.answer = path, (answer[0], answer[1], dict(answer[2]))
    hosted = HostedRunwayClient(server.url, token=SECRET, timeout=2, max_attempts=2,
                                backoff=0.05, max_backoff=0.1)
    replicate = ReplicateClient("a/b:v1", token=SECRET, base_url=server.url, timeout=2,
                                wait=1, poll_interval=0.05, max_retries=1, max_retry_wait=0.1,
                                request_timeout=2, connect_timeout=2)
    for client in (hosted, replicate):
        exercise(client, options)


@pytest.mark.network
@fuzz(60)
@given(path=st.sampled_from(["*", "/", "/meta", "/health-check", "/openapi.json",
                             "/healthcheck"]), answer=answers)
def test_connect_detects_over_generated_answers_into_runway_errors_only(cog_server, path,
                                                                        answer):
    server, ans = cog_server
    with ans.lock:
        ans.path, ans.answer = path, (answer[0], answer[1], dict(answer[2]))
    client = only_runway_errors(connect, server.url, token=SECRET, timeout=3)
    if client is not None:
        try:
            only_runway_errors(client.spec)
        finally:
            client.close()


@fuzz(200)
@given(url=st.text(max_size=30) | st.sampled_from(["http://", "http://[::1", "http://x:99999",
                                                   "https://:0/", "http://127.0.0.1:0"]),
       token=st.none() | st.text(max_size=12) | st.just(SECRET + "\n"),
       protocol=st.none() | st.sampled_from(["cog", "runway", "runway-hosted", "replicate",
                                             "nope", ""]),
       options=st.dictionaries(st.sampled_from(["foo", "tokn", "health_timeout"]), leaf,
                               max_size=1))
def test_connect_with_generated_urls_tokens_and_protocols_only_raises_runway_errors(
        url, token, protocol, options):
    client = only_runway_errors(connect, url, token=token, protocol=protocol, timeout=1,
                                **options)
    if client is not None:
        client.close()


@pytest.mark.parametrize("protocol,url", [("cog", "http://127.0.0.1:1"),
                                          ("runway", "http://127.0.0.1:1"),
                                          ("runway-hosted", "http://127.0.0.1:1"),
                                          ("replicate", "a/b")])
def test_connect_with_an_option_the_client_does_not_take_is_a_usage_error(protocol, url):
    # Found by probing connect(): an unknown option was the client class's TypeError.
    with pytest.raises(UsageError, match=rf"A {protocol} model takes no option 'tokn'\.") \
            as err:
        connect(url, protocol=protocol, tokn="x")
    assert "timeout" in err.value.hint and "model" not in err.value.hint.split(": ")[1]
