"""Validation: every rule fails when broken and passes when kept; defaults follow the
protocol docs; all issues are reported at once; garbage only raises SpecValidationError."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from runway_addon.core.codecs import FileValue
from runway_addon.core.errors import SpecValidationError
from runway_addon.core.spec import (AnyField, ArrayField, BooleanField, CategoryField,
                                    FileField, ImageBoundingBoxField, ImageField,
                                    ImageLandmarksField, ImagePointField, IntegerField,
                                    NumberField, SecretField, SegmentationField, TextField,
                                    VectorField)
from runway_addon.core.validation import (MISSING, default_value, guess_protocol,
                                          validate_inputs, validate_value)


def rules(field, value):
    return [i.rule for i in validate_value(field, value)]


SEG = SegmentationField(name="seg", labels=["a", "b"], label_to_id={"a": 0, "b": 4},
                        label_to_color={"a": (0, 0, 0), "b": (255, 0, 0)}, max_width=8)

# (field, a value that keeps the rule, a value that breaks it, the rule)
CASES = [
    (NumberField(name="n", min=0.0), 0.0, -0.1, "min"),
    (NumberField(name="n", max=1.0), 1.0, 1.5, "max"),
    (NumberField(name="n", min=0.0, step=0.1), 0.3, 0.35, "step"),
    (NumberField(name="n", step=0.25), -0.75, 0.3, "step"),
    (NumberField(name="n"), 1, "1", "type"),
    (NumberField(name="n"), 2.5, True, "type"),
    (NumberField(name="n"), 1e300, float("nan"), "type"),
    (NumberField(name="n"), np.float32(2), 10 ** 400, "type"),
    (IntegerField(name="i", min=2), 2, 1, "min"),
    (IntegerField(name="i", max=5), np.int64(5), 6, "max"),
    (IntegerField(name="i", min=1, step=2), 5, 4, "step"),
    (IntegerField(name="i"), 3.0, 3.5, "type"),
    (TextField(name="t", min_length=2), "ab", "a", "min_length"),
    (TextField(name="t", max_length=3), "abc", "abcd", "max_length"),
    (TextField(name="t", pattern=r"^\d+$"), "123", "12a", "pattern"),
    (TextField(name="t"), "", 5, "type"),
    (BooleanField(name="b"), np.bool_(True), 1, "type"),
    (CategoryField(name="c", choices=["x", "y"]), "y", "z", "choices"),
    (CategoryField(name="c", choices=[1, 2]), 2.0, "2", "choices"),
    (VectorField(name="v", length=3), np.zeros(3), [1, 2], "length"),
    (VectorField(name="v", length=2), (1, 2), [1, "a"], "type"),
    (ImageField(name="im"), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8),
     "channels"),
    (ImageField(name="im"), Image.new("RGB", (4, 4)), "not an image", "type"),
    (ImageField(name="im"), np.zeros((4, 4), np.float32), np.zeros((4, 4), np.int64), "type"),
    (ImageField(name="im", width=4), np.zeros((2, 4, 3), np.uint8), np.zeros((4, 2, 3), np.uint8),
     "width"),
    (ImageField(name="im", min_width=3), np.zeros((1, 3)), np.zeros((1, 2)), "width"),
    (ImageField(name="im", max_width=3), np.zeros((1, 3)), np.zeros((1, 4)), "width"),
    (ImageField(name="im", height=2), np.zeros((2, 9)), np.zeros((3, 9)), "height"),
    (ImageField(name="im", min_height=2), np.zeros((2, 1)), np.zeros((1, 1)), "height"),
    (ImageField(name="im", max_height=2), np.zeros((2, 1)), np.zeros((3, 1)), "height"),
    (SEG, np.array([[0, 4]], np.uint8), np.array([[0, 3]], np.uint8), "labels"),
    (SEG, np.zeros((2, 8), np.int32), np.zeros((2, 9), np.int32), "width"),
    (SEG, np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.float32), "type"),
    (ImagePointField(name="p"), [0, 1], [0.5, 1.01], "normalised"),
    (ImagePointField(name="p"), (0.2, 0.3), [0.5], "length"),
    (ImagePointField(name="p"), [0.2, 0.3], "0.2,0.3", "type"),
    (ImageBoundingBoxField(name="bb"), [0, 0, 1, 1], [0.5, 0, 0.4, 1], "order"),
    (ImageBoundingBoxField(name="bb"), [0, 0, 1, 1], [0, 0.5, 1, 0.5], "order"),
    (ImageBoundingBoxField(name="bb"), [0, 0, 1, 1], [0, 0, 1, 2], "normalised"),
    (ImageBoundingBoxField(name="bb"), [0, 0, 1, 1], [0, 0, 1], "length"),
    (ImageLandmarksField(name="lm", length=2), [[0, 0], [1, 1]], [[0, 0]], "length"),
    (ImageLandmarksField(name="lm", length=1), np.array([[0.5, 0.5]]), [[0.5, -1]], "normalised"),
    (ArrayField(name="a", item=TextField(name="t"), min_length=1), ["x"], [], "min_length"),
    (ArrayField(name="a", item=TextField(name="t"), max_length=1), ["x"], ["x", "y"],
     "max_length"),
    (ArrayField(name="a", item=NumberField(name="n", max=1.0)), [0.5, 1.0], [0.5, 2.0], "max"),
    (ArrayField(name="a", item=TextField(name="t")), ("x",), "x", "type"),
    (FileField(name="f"), FileValue(name="x", data=b""), 12, "type"),
    (FileField(name="f"), "/models/x.ckpt", "", "required"),
    (SecretField(name="s"), "token", 1234, "type"),
]


@pytest.mark.parametrize("field,good,bad,rule", CASES,
                         ids=[f"{c[0].type}-{c[3]}-{i}" for i, c in enumerate(CASES)])
def test_every_rule_fails_when_broken_and_passes_when_kept(field, good, bad, rule):
    assert validate_value(field, good) == []
    assert rule in rules(field, bad)
    with pytest.raises(SpecValidationError) as err:
        validate_inputs([field], {field.name: bad}, protocol="runway")
    assert any(i.rule == rule for i in err.value.issues)


def test_message_names_field_value_and_rule():
    field = NumberField(name="strength", min=0.0, max=1.0)
    with pytest.raises(SpecValidationError) as err:
        validate_inputs([field], {"strength": 1.5})
    assert str(err.value).startswith("strength: 1.5 is above the maximum 1.0")
    issue = err.value.issues[0]
    assert (issue.field, issue.value, issue.rule) == ("strength", 1.5, "max")


def test_image_messages_are_short_and_secrets_never_shown():
    big = np.zeros((1080, 1920, 5), np.uint8)
    [issue] = validate_value(ImageField(name="im"), big)
    assert "1080x1920x5 uint8" in issue.message and len(issue.message) < 300
    with pytest.raises(SpecValidationError) as err:
        validate_inputs([SecretField(name="token")], {"token": ["hunter2-secret"]})
    assert "hunter2" not in str(err.value) and "hunter2" not in repr(err.value.issues)
    assert err.value.issues[0].value == "***"


def test_all_issues_are_listed_at_once():
    fields = [NumberField(name="n", max=1.0), TextField(name="t", max_length=1),
              ImageField(name="im"), TextField(name="need", required=True)]
    with pytest.raises(SpecValidationError) as err:
        validate_inputs(fields, {"n": 2.0, "t": "long", "typo": 1}, protocol="runway")
    got = {(i.field, i.rule) for i in err.value.issues}
    assert got == {("n", "max"), ("t", "max_length"), ("typo", "unknown"),
                   ("im", "required"), ("need", "required")}
    assert "typo: is not an input of this model" in str(err.value)


def test_array_items_are_named_by_index():
    field = ArrayField(name="prompts", item=TextField(name="t", max_length=2))
    [issue] = validate_value(field, ["ok", "too long"])
    assert (issue.field, issue.rule) == ("prompts[1]", "max_length")
    assert [i.rule for i in validate_value(field, ["a", None])] == ["required"]


# --------------------------------------------------------------------------- defaults

def test_runway_defaults_follow_the_sdk():
    assert default_value(NumberField(name="n", min=2.0, max=5.0)) == 2.0
    assert default_value(NumberField(name="n", max=5.0)) == 5.0
    assert default_value(NumberField(name="n")) == 0.0
    assert default_value(IntegerField(name="n", default=3, min=1)) == 3
    assert default_value(CategoryField(name="c", choices=["p", "q"])) == "p"
    assert default_value(CategoryField(name="c", choices=["p", "q"], default="q")) == "q"
    assert default_value(TextField(name="t")) == ""
    assert default_value(BooleanField(name="b")) is False
    assert default_value(VectorField(name="v", length=3, sampling_mean=0.5)) == [0.5] * 3
    assert default_value(ArrayField(name="a", item=TextField(name="t"))) == []
    assert default_value(ImageField(name="im")) is MISSING
    assert default_value(FileField(name="f", default="/x")) == "/x"


def test_cog_leaves_nullable_inputs_out():
    fields = [IntegerField(name="seed", min=0), TextField(name="prompt", required=True),
              NumberField(name="scale", default=7.5)]
    assert guess_protocol(fields) == "cog"
    assert validate_inputs(fields, {"prompt": "a cat"}) == {"prompt": "a cat", "scale": 7.5}
    out = validate_inputs(fields, {"prompt": "a cat", "seed": np.int64(4)}, protocol="cog")
    assert out == {"prompt": "a cat", "seed": 4, "scale": 7.5} and type(out["seed"]) is int


def test_runway_inputs_are_completed_and_normalised():
    fields = [NumberField(name="n", min=0.0), CategoryField(name="c", choices=["a", "b"]),
              ImagePointField(name="p"), VectorField(name="v", length=2),
              ImageField(name="im"), AnyField(name="any")]
    img = np.zeros((2, 2, 3), np.uint8)
    out = validate_inputs(fields, {"p": (0.5, np.float32(0.25)), "v": np.ones(2), "im": img,
                                   "n": None, "any": {"k": 1}})
    assert out["n"] == 0.0 and out["c"] == "a" and out["p"] == [0.5, 0.25]
    assert out["v"] == [1.0, 1.0] and out["im"] is img and out["any"] == {"k": 1}
    with pytest.raises(SpecValidationError, match="any"):  # the SDK fails on it left out
        validate_inputs(fields, {"p": [0.5, 0.5], "im": img})
    with pytest.raises(SpecValidationError):
        validate_inputs([ArrayField(name="a", item=TextField(name="t"), min_length=2)], {},
                        protocol="runway")


# --------------------------------------------------------------------------- properties

@given(k=st.integers(-1000, 1000))
def test_on_the_step_grid_passes_and_off_it_fails(k):
    field = NumberField(name="n", min=-2.0, step=0.1)
    value = -2.0 + k * 0.1
    assert "step" not in rules(field, value)
    assert "step" in rules(field, value + 0.05)


@given(v=st.floats(allow_nan=True, allow_infinity=True))
def test_number_bounds_property(v):
    field = NumberField(name="n", min=-1.0, max=1.0)
    found = rules(field, v)
    if math.isnan(v) or math.isinf(v):
        assert found == ["type"]
    elif v < -1:
        assert found == ["min"]
    elif v > 1:
        assert found == ["max"]
    else:
        assert found == []


FIELDS = [NumberField(name="n", min=0.0, max=1.0, step=0.5), IntegerField(name="i"),
          TextField(name="t", pattern="a+"), BooleanField(name="b"),
          CategoryField(name="c", choices=["x"]), VectorField(name="v", length=2),
          ArrayField(name="arr", item=ImagePointField(name="p")), FileField(name="f"), SEG,
          ImageField(name="im", max_width=4), ImageBoundingBoxField(name="bb"),
          ImageLandmarksField(name="lm", length=1), SecretField(name="s"), AnyField(name="x")]

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.sampled_from([np.zeros((0, 3)), np.zeros((2, 2, 7)), np.array(["a"]), object(),
                       np.zeros((3, 3, 3), np.uint8), [[0.1, 0.2]], [0, 0, 1, 1]]),
    lambda c: st.lists(c, max_size=4) | st.tuples(c, c), max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.dictionaries(st.sampled_from([f.name for f in FIELDS] + ["zz", 3]), junk,
                              max_size=8),
       protocol=st.sampled_from(["runway", "cog", None]))
def test_garbage_only_ever_raises_spec_validation_error(values, protocol):
    try:
        out = validate_inputs(FIELDS, values, protocol=protocol)
    except SpecValidationError as err:
        assert err.issues and all(i.field and i.rule and i.message for i in err.issues)
    else:
        assert set(out) <= {f.name for f in FIELDS}


def test_not_a_dict_is_a_validation_error():
    with pytest.raises(SpecValidationError, match="not a dict"):
        validate_inputs(FIELDS, ["n", 1])
