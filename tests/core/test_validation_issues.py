"""Validation, issue by issue: for each rule the exact issue (field, value, rule and
message) a broken value gives; what validate_inputs returns and raises; the defaults
and the pattern guard. tests/core/test_validation.py holds the rule table and the
property tests."""
from __future__ import annotations

import numpy as np
import pytest

from runway_addon.core.errors import SpecValidationError
from runway_addon.core.spec import (AnyField, ArrayField, BooleanField, CategoryField,
                                    FileField, ImageBoundingBoxField, ImageField,
                                    ImageLandmarksField, ImagePointField, IntegerField,
                                    NumberField, SecretField, SegmentationField, TextField,
                                    VectorField)
from runway_addon.core.validation import (MISSING, PATTERN_STEP_BUDGET, default_value,
                                          guess_protocol, pattern_checker, sample_vector,
                                          validate_inputs, validate_value)

NUM = NumberField(name="s", min=0.0, max=1.0, step=0.25)
INT = IntegerField(name="n", min=2, max=10, step=2)
TEXT = TextField(name="t", min_length=2, max_length=4, pattern="^a")
CAT = CategoryField(name="c", choices=["a", 1, 2.5])
BOX = ImageBoundingBoxField(name="bb")
LANDMARKS = ImageLandmarksField(name="lm", length=2)
ARRAY = ArrayField(name="a", item=IntegerField(name="i", max=5), min_length=1, max_length=2)
IMAGE = ImageField(name="im", width=4, min_height=3, max_height=3)
SEG = SegmentationField(name="sg", labels=["sky", "sea"])
BIG = 10 ** 400
ORDER = "needs xmin < xmax and ymin < ymax ([xmin, ymin, xmax, ymax])"
NOT_NORMALISED = "is not normalised: every coordinate must be between 0 and 1"

# (field, a broken value, the issues as (message, rule); each names the field and holds
# the value itself)
ISSUES = [
    (NUM, "x", [("'x' is not a number", "type")]),
    (NUM, True, [("True is not a number", "type")]),
    (NUM, 1.5, [("1.5 is above the maximum 1.0", "max")]),
    (NUM, -0.5, [("-0.5 is below the minimum 0.0", "min")]),
    (NUM, 0.3, [("0.3 is not 0.0 plus a multiple of the step 0.25", "step")]),
    (NUM, float("inf"), [("inf is not a finite number", "type")]),
    (NUM, BIG, [("1000000000000000000000000000000000000... is too large for a number", "type")]),
    (NumberField(name="s", step=0.5), 0.75, [("0.75 is not 0 plus a multiple of the step 0.5",
                                              "step")]),
    (INT, 2.5, [("2.5 is not a whole number", "type")]),
    (INT, 3, [("3 is not 2 plus a multiple of the step 2", "step")]),
    (INT, 12, [("12 is above the maximum 10", "max")]),
    (INT, 1, [("1 is below the minimum 2", "min"), ("1 is not 2 plus a multiple of the step 2",
                                                    "step")]),
    (IntegerField(name="n", step=3), 4, [("4 is not 0 plus a multiple of the step 3", "step")]),
    (TEXT, 5, [("5 is not text", "type")]),
    (TEXT, "a", [("'a' is shorter than 2 characters", "min_length")]),
    (TEXT, "abcde", [("'abcde' is longer than 4 characters", "max_length")]),
    (TEXT, "ba", [("'ba' does not match the pattern '^a'", "pattern")]),
    (BooleanField(name="b"), 1, [("1 is not true or false", "type")]),
    (CAT, "b", [("'b' is not one of ['a', 1, 2.5]", "choices")]),
    (CAT, True, [("True is not one of ['a', 1, 2.5]", "choices")]),
    (CAT, "1", [("'1' is not one of ['a', 1, 2.5]", "choices")]),
    (VectorField(name="v", length=2), [1, 2, 3], [("[1, 2, 3] has 3 numbers, expected 2",
                                                   "length")]),
    (VectorField(name="v", length=2), "ab", [("'ab' is not a list of numbers", "type")]),
    (VectorField(name="v", length=2), [1, float("nan")],
     [("item 1 (nan) is not a finite number", "type")]),
    (VectorField(name="v", length=2), [1, BIG],
     [("item 1 (1000000000000000000000000000000000000...) is not a finite number", "type")]),
    (ImagePointField(name="p"), [0.5, 1.5], [(f"[0.5, 1.5] {NOT_NORMALISED}", "normalised")]),
    (ImagePointField(name="p"), [0.5, -0.1], [(f"[0.5, -0.1] {NOT_NORMALISED}", "normalised")]),
    (BOX, [0.5, 0.1, 0.5, 0.9], [(f"[0.5, 0.1, 0.5, 0.9] {ORDER}", "order")]),
    (BOX, [0.1, 0.5, 0.9, 0.5], [(f"[0.1, 0.5, 0.9, 0.5] {ORDER}", "order")]),
    (BOX, [0.1, 0.1, 0.9, 2], [(f"[0.1, 0.1, 0.9, 2] {NOT_NORMALISED}", "normalised")]),
    (BOX, [0.1, 0.1, 0.9], [("[0.1, 0.1, 0.9] has 3 numbers, expected 4", "length")]),
    (LANDMARKS, 5, [("5 is not a list of [x, y] points", "type")]),
    (LANDMARKS, [[0.1, 0.2]], [("has 1 landmarks, expected 2", "length")]),
    (ARRAY, 5, [("5 is not a list", "type")]),
    (ARRAY, [], [("has 0 items, fewer than the minimum 1", "min_length")]),
    (ARRAY, [1, 2, 3], [("has 3 items, more than the maximum 2", "max_length")]),
    (IMAGE, np.zeros((3, 4, 5), np.uint8),
     [("array 3x4x5 uint8 has 5 channels; an image has 1 (grey), 2 (grey+alpha), 3 (RGB) or "
       "4 (RGBA), and is converted to the 3 this field takes", "channels")]),
    (IMAGE, np.zeros((3, 4, 0), np.uint8),
     [("array 3x4x0 uint8 has 0 channels; an image has 1 (grey), 2 (grey+alpha), 3 (RGB) or "
       "4 (RGBA), and is converted to the 3 this field takes", "channels")]),
    (IMAGE, np.zeros((2, 5, 3), np.uint8), [("image width 5 is not the required 4", "width"),
                                            ("image height 2 is below the minimum 3",
                                             "height")]),
    (IMAGE, np.zeros((4, 4, 3), np.uint8), [("image height 4 is above the maximum 3",
                                             "height")]),
    (IMAGE, "nope", [("'nope' is not an image (expected a numpy array or a PIL image)",
                      "type")]),
    (ImageField(name="im", min_width=5, max_width=2), np.zeros((1, 3, 3), np.uint8),
     [("image width 3 is below the minimum 5", "width"),
      ("image width 3 is above the maximum 2", "width")]),
    (FileField(name="f"), "", [("the file path is empty", "required")]),
    (FileField(name="f"), 5, [("5 is not a file path, URL or FileValue", "type")]),
    (SEG, np.array([[0, 1], [2, 7]], np.uint8),
     [("label ids [2, 7] are not among the labels {'sky': 0, 'sea': 1}", "labels")]),
    (SEG, "nope", [("'nope' is not a label-id array", "type")]),
    (SegmentationField(name="sg", labels=["sky"], width=3), np.zeros((2, 2), np.uint8),
     [("image width 2 is not the required 3", "width")]),
]


@pytest.mark.parametrize("field, value, expected", ISSUES)
def test_each_broken_rule_gives_its_issue(field, value, expected):
    found = validate_value(field, value)
    assert [(i.message, i.rule) for i in found] == expected
    assert all(i.field == field.name and i.value is value for i in found)
    assert [str(i) for i in found] == [f"{field.name}: {m}" for m, _ in expected]


@pytest.mark.parametrize("field, value", [
    (NUM, 0.5), (NUM, np.float32(0.75)), (INT, 4.0), (INT, np.int64(6)), (TEXT, "ab"),
    (IntegerField(name="n", step=3), 6), (NumberField(name="s", step=0.5), 1.0),
    (CAT, np.int64(1)), (CAT, 2.5), (VectorField(name="v", length=2), np.array([1.0, 2.0])),
    (ImagePointField(name="p"), [0.0, 1.0]), (BOX, [0.1, 0.1, 0.9, 0.9]),
    (ARRAY, np.array([1, 2])), (ImageField(name="im"), np.zeros((3, 4), np.uint8)),
    (FileField(name="f"), "/x"), (FileField(name="f"), b"data"), (BooleanField(name="b"),
                                                                  np.bool_(False)),
    (ArrayField(name="ai", item=ImageField(name="im")), [np.zeros((2, 2, 3), np.uint8)]),
    (ImageField(name="im", width=4, height=3), np.zeros((3, 4, 3), np.uint8)),
])
def test_values_that_keep_every_rule_give_no_issue(field, value):
    assert validate_value(field, value) == []


def test_issues_inside_lists_are_named_by_index_and_hold_that_item():
    bad_point = [2, 0.5]
    short = [1]
    found = validate_value(LANDMARKS, [[0.1, 0.2], bad_point, short])
    assert [(i.field, i.rule, i.message) for i in found] == [
        ("lm", "length", "has 3 landmarks, expected 2"),
        ("lm[1]", "normalised", f"[2, 0.5] {NOT_NORMALISED}"),
        ("lm[2]", "length", "[1] has 1 numbers, expected 2")]
    assert found[1].value is bad_point and found[2].value is short
    assert validate_value(LANDMARKS, np.array([[0.1, 0.2], [0.3, 0.4]])) == []
    found = validate_value(ARRAY, [None, 7])
    assert [(i.field, i.value, i.rule, i.message) for i in found] == [
        ("a[0]", None, "required", "has no value"), ("a[1]", 7, "max", "7 is above the maximum 5")]
    found = validate_value(ARRAY, [1, 7], name="items")
    assert [i.field for i in found] == ["items[1]"]


def test_an_array_of_images_is_never_unpacked_from_one_array():
    # An HxWxC array is one image, not H items: for image items it must come as a list.
    field = ArrayField(name="ai", item=ImageField(name="im"))
    stack = np.zeros((2, 3, 3), np.uint8)
    [issue] = validate_value(field, stack)
    assert (issue.rule, issue.message) == ("type", "array 2x3x3 uint8 is not a list")
    seg = ArrayField(name="as", item=SegmentationField(name="s", labels=["a"]))
    assert validate_value(seg, np.zeros((2, 2), np.uint8))[0].rule == "type"


def test_a_secret_is_never_shown_and_only_its_type_is_checked():
    field = SecretField(name="k")
    [issue] = validate_value(field, 5)
    assert (issue.field, issue.value, issue.rule, issue.message) == \
        ("k", "***", "type", "the secret is not text")
    assert validate_value(field, "short") == []


def test_a_missing_value_is_an_issue_only_when_required():
    assert validate_value(TextField(name="t"), None) == []
    [issue] = validate_value(TextField(name="t", required=True), None)
    assert (issue.field, issue.value, issue.rule, issue.message) == \
        ("t", None, "required", "is required and has no value")
    assert validate_value(AnyField(name="x"), object()) == []


# ---------------------------------------------------------------- validate_inputs

def test_unknown_and_missing_inputs_are_all_reported_with_the_known_names():
    fields = [TextField(name="prompt", required=True), IntegerField(name="steps")]
    with pytest.raises(SpecValidationError) as err:
        validate_inputs(fields, {"promt": "x", 3: 1}, protocol="cog")
    issues = [(i.field, i.value, i.rule, i.message) for i in err.value.issues]
    assert issues == [
        ("promt", None, "unknown", "is not an input of this model (inputs: prompt, steps)"),
        ("3", None, "unknown", "is not an input of this model (inputs: prompt, steps)"),
        ("prompt", None, "required", "is required and has no value")]
    assert err.value.hint == "Change these values and run again."
    with pytest.raises(SpecValidationError) as err:
        validate_inputs([], {"x": 1})
    assert err.value.issues[0].message == "is not an input of this model (inputs: none)"


def test_values_that_are_no_dict_are_one_issue():
    with pytest.raises(SpecValidationError) as err:
        validate_inputs([], [1, 2])
    [issue] = err.value.issues
    assert (issue.field, issue.value, issue.rule, issue.message) == \
        ("inputs", "[1, 2]", "type", "[1, 2] is not a dict of values")


def test_runway_needs_array_items_and_images():
    fields = [ArrayField(name="a", item=TextField(name="t"), min_length=2),
              ImageField(name="im"), AnyField(name="x")]
    with pytest.raises(SpecValidationError) as err:
        validate_inputs(fields, {}, protocol="runway")
    assert [(i.field, i.rule, i.message) for i in err.value.issues] == [
        ("a", "min_length", "needs at least 2 items"),
        ("im", "required", "is required and has no value"),
        ("x", "required", "is required and has no value")]
    assert validate_inputs(fields, {}, protocol="cog") == {}


def test_sent_values_are_plain_python():
    fields = [IntegerField(name="i"), NumberField(name="n"), VectorField(name="v", length=2),
              ImagePointField(name="p"), ImageBoundingBoxField(name="b"),
              ImageLandmarksField(name="l", length=1), ArrayField(name="a", item=IntegerField(
                  name="x")), TextField(name="t"), CategoryField(name="c", choices=[1, 2])]
    out = validate_inputs(fields, {"i": 4.0, "n": 3, "v": np.array([1, 2]), "p": (0, 1),
                                   "b": [0, 0, 1, 1], "l": [(0, 1)], "a": (1, 2),
                                   "t": np.str_("hi"), "c": np.int64(2)}, protocol="cog")
    assert out == {"i": 4, "n": 3.0, "v": [1.0, 2.0], "p": [0.0, 1.0], "b": [0.0, 0.0, 1.0, 1.0],
                   "l": [[0.0, 1.0]], "a": [1, 2], "t": "hi", "c": 2}
    assert type(out["i"]) is int and type(out["n"]) is float and type(out["c"]) is int
    assert all(type(x) is float for x in out["v"] + out["p"] + out["b"] + out["l"][0])
    assert type(out["a"]) is list and type(out["t"]) is str
    assert validate_inputs([IntegerField(name="i")], {"i": np.int64(3)})["i"].__class__ is int


def test_a_broken_value_is_left_out_of_nothing_it_raises():
    with pytest.raises(SpecValidationError) as err:
        validate_inputs([NUM, TextField(name="ok")], {"s": 2.0, "ok": "fine"}, protocol="cog")
    assert [i.field for i in err.value.issues] == ["s"]


# ---------------------------------------------------------------- defaults and protocol

def test_the_protocol_is_guessed_from_the_fields():
    assert guess_protocol([TextField(name="a"), TextField(name="b", required=True)]) == "cog"
    assert guess_protocol([TextField(name="a", raw={"x-order": 0})]) == "cog"
    assert guess_protocol([TextField(name="a", raw={"type": "string"})]) == "runway"
    assert guess_protocol([]) == "runway"


@pytest.mark.parametrize("field, runway, cog", [
    (TextField(name="t"), "", MISSING),
    (TextField(name="t", default="hi"), "hi", "hi"),
    (NumberField(name="n", min=0.5, max=2.0), 0.5, MISSING),
    (NumberField(name="n", max=2.0), 2.0, MISSING),
    (NumberField(name="n"), 0.0, MISSING),
    (IntegerField(name="i", max=7), 7, MISSING),
    (IntegerField(name="i"), 0, MISSING),
    (BooleanField(name="b"), False, MISSING),
    (CategoryField(name="c", choices=["x", "y"]), "x", MISSING),
    (CategoryField(name="c", choices=[]), MISSING, MISSING),
    (VectorField(name="v", length=3, sampling_mean=0.5), [0.5, 0.5, 0.5], MISSING),
    (ArrayField(name="a", item=TextField(name="t")), [], MISSING),
    (ArrayField(name="a", item=TextField(name="t"), min_length=1), MISSING, MISSING),
    (ImageField(name="im"), MISSING, MISSING),
    (TextField(name="t", required=True), MISSING, MISSING),
])
def test_defaults_by_protocol(field, runway, cog):
    got = default_value(field, "runway")
    assert got == runway and type(got) is type(runway)
    assert default_value(field, "cog") == cog
    assert default_value(field) == runway


def test_a_list_default_is_a_copy():
    field = VectorField(name="v", length=2, default=[1.0, 2.0])
    got = default_value(field)
    assert got == [1.0, 2.0] and got is not field.default
    got.append(3.0)
    assert field.default == [1.0, 2.0]


def test_missing_shows_as_missing():
    assert repr(MISSING) == "MISSING"


def test_sampled_vectors_follow_the_fields_distribution():
    field = VectorField(name="z", length=4000, sampling_mean=3.0, sampling_std=0.5)
    z = np.array(sample_vector(field, np.random.default_rng(1)))
    assert z.shape == (4000,) and abs(z.mean() - 3.0) < 0.05 and abs(z.std() - 0.5) < 0.05
    assert sample_vector(field, np.random.default_rng(7)) == sample_vector(
        field, np.random.default_rng(7))
    assert len(sample_vector(VectorField(name="z", length=3))) == 3


# ---------------------------------------------------------------- the pattern guard

def test_patterns_too_costly_or_broken_are_left_to_the_server():
    assert pattern_checker("^a", 10).pattern == "^a"
    assert pattern_checker("a+b", 100).pattern == "a+b"
    assert pattern_checker("(a+)+$", 10) is None  # a repeat inside a repeat
    assert pattern_checker(r"(a)\1", 10) is None  # a back-reference
    assert pattern_checker("(", 10) is None
    assert pattern_checker("a" * 1001, 10) is None and pattern_checker("a" * 1000, 10)
    # a+b+ unanchored: length ** 3 steps; past the budget it is not run here.
    n = round(PATTERN_STEP_BUDGET ** (1 / 3))
    assert pattern_checker("a+b+", n - 1) is not None
    assert pattern_checker("a+b+", n + 1) is None
    assert pattern_checker("^a+b+", n + 1) is not None  # anchored: one power less
    assert pattern_checker("(foo|bar)*", 10) is not None
    assert pattern_checker("(a|aa)*", 10) is None


def test_a_pattern_not_run_here_passes():
    field = TextField(name="t", pattern="(a+)+$")
    assert validate_value(field, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!") == []
