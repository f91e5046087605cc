"""Check values against a model's spec before anything is sent.

Neither server enforces most limits (the Runway SDK ignores min/max/length/size; Cog only
checks when its schema file exists), so the client does, and says which field broke which
rule: ``strength: 1.5 is above the maximum 1.0``.

Rules (``FieldIssue.rule``): type, required, unknown, min, max, step, min_length,
max_length, pattern, choices, channels, width, height, length, normalised, order, labels.

Images: any of 1, 2, 3 or 4 channels is accepted for any image field, because the codecs
convert (grey is repeated, alpha dropped or added, colour to grey by luminance), as the
servers themselves do; the ``channels`` rule only refuses arrays that are no image at all
(e.g. HxWx5). Float images are clipped to 0..1 by the codecs.
"""
from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping
from typing import Any, Iterable, Optional

import numpy as np

from .codecs import (FileValue, describe, image_array, label_ids, segmentation_ids)
from .errors import CodecError, FieldIssue, SpecValidationError, register_secret


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()  # "no default": the key is left out of the request

# With no value and no default, a Runway server fails on these (500), so they are required
# ("any" too: the real SDK answers 500 "Missing field" to it, and to a type it does not know).
_RUNWAY_NEEDS_VALUE = {"image", "segmentation", "file", "image_point", "image_bounding_box",
                       "image_landmarks", "any"}
_STEP_TOLERANCE = 1e-6  # in units of the step: float steps like 0.1 are never exact


# --------------------------------------------------------------------------- defaults

def guess_protocol(fields: Iterable) -> str:
    """"cog" when a field looks like Cog's (required, or an OpenAPI ``x-order``), else
    "runway". Callers that know the protocol should pass it instead."""
    for f in fields:
        if f.required or (isinstance(f.raw, dict) and "x-order" in f.raw):
            return "cog"
    return "runway"


def default_value(field, protocol: str = "runway") -> Any:
    """The value a missing input takes, or MISSING when the key should be left out.

    Explicit defaults always apply. The Runway SDK's fallbacks (text "", number min, else
    max, else 0, boolean false, category first choice, vector at its sampling mean, array
    empty) apply only to Runway: a Cog input without default is nullable and the model
    decides what "no value" means."""
    default = getattr(field, "default", None)
    if default is not None:
        return list(default) if isinstance(default, list) else default
    if protocol != "runway" or field.required:
        return MISSING
    t = field.type
    if t == "text":
        return ""
    if t in ("number", "integer"):
        for bound in (field.min, field.max):
            if bound is not None:
                return bound
        return 0.0 if t == "number" else 0
    if t == "boolean":
        return False
    if t == "category":
        return field.choices[0] if field.choices else MISSING
    if t == "vector":
        return [float(field.sampling_mean)] * field.length
    if t == "array" and field.min_length == 0:
        return []
    return MISSING


def sample_vector(field, rng: Optional[np.random.Generator] = None) -> list[float]:
    """z ~ N(sampling_mean, sampling_std), as the Runway app's "sample" button did."""
    rng = rng or np.random.default_rng()
    return rng.normal(field.sampling_mean, field.sampling_std, field.length).tolist()


# --------------------------------------------------------------------------- one value

def _show(field, value: Any) -> str:
    return "the secret" if field.type == "secret" else describe(value)


class _Issues:
    """Collects issues for one field, masking secret values."""

    def __init__(self, field, name: str):
        self.field, self.name, self.items = field, name, []

    def add(self, value: Any, rule: str, message: str) -> None:
        shown = "***" if self.field.type == "secret" else value
        self.items.append(FieldIssue(self.name, shown, rule, message))


def validate_value(field, value: Any, name: Optional[str] = None) -> list[FieldIssue]:
    """Every rule of ``field`` that ``value`` breaks (empty when it fits). ``None`` means
    "no value": an issue only for required fields."""
    issues = _Issues(field, name or field.name)
    if value is None:
        if field.required:
            issues.add(value, "required", "is required and has no value")
        return issues.items
    check = _CHECKS.get(field.type)
    if check is not None:
        try:
            check(field, value, issues)
        except (RecursionError, MemoryError) as e:
            issues.add(value, "type", f"{_show(field, value)} cannot be checked: "
                                      f"{type(e).__name__}")
    return issues.items


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) \
        and not isinstance(v, (complex, np.complexfloating))


def _check_bounds(field, v, shown: str, issues: _Issues, value: Any) -> None:
    if field.min is not None and v < field.min:
        issues.add(value, "min", f"{shown} is below the minimum {field.min!r}")
    if field.max is not None and v > field.max:
        issues.add(value, "max", f"{shown} is above the maximum {field.max!r}")


def _check_number(field, value, issues: _Issues) -> None:
    shown = _show(field, value)
    if not _is_number(value):
        issues.add(value, "type", f"{shown} is not a number")
        return
    v = value.item() if isinstance(value, np.generic) else value
    if field.type == "integer":
        if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
            issues.add(value, "type", f"{shown} is not a whole number")
            return
        v = int(v)
    else:
        try:
            v = float(v)
        except OverflowError:
            issues.add(value, "type", f"{shown} is too large for a number")
            return
        if not math.isfinite(v):
            issues.add(value, "type", f"{shown} is not a finite number")
            return
    _check_bounds(field, v, shown, issues, value)
    step = field.step
    if step is not None and step > 0:
        base = field.min if field.min is not None else 0
        if field.type == "integer":
            on_grid = (v - int(base)) % int(step) == 0
        else:
            k = (v - base) / step
            on_grid = math.isfinite(k) and abs(k - round(k)) <= _STEP_TOLERANCE
        if not on_grid:
            issues.add(value, "step", f"{shown} is not {base!r} plus a multiple of the step "
                                      f"{step!r}")


# --------------------------------------------------------------------------- server patterns

MAX_PATTERN_LENGTH = 1000
# Backtracking steps a pattern check may cost, estimated as len(text) ** (unbounded
# repeats + 1 for an unanchored search): about 0.1 s of CPU at most.
PATTERN_STEP_BUDGET = 10 ** 7


@functools.lru_cache(maxsize=256)
def _pattern_cost(pattern: str) -> Optional[tuple]:
    """(compiled pattern, exponent) for a pattern that is safe to run, or None for one
    that is too long, broken, or may backtrack catastrophically (a repeat inside a
    repeat, a back-reference)."""
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_LENGTH:
        return None
    try:
        compiled = re.compile(pattern)
        from re import _parser  # Python 3.11+
        from re import _constants as C
        tree = _parser.parse(pattern)
    except (re.error, ImportError, RecursionError, OverflowError, ValueError, MemoryError):
        return None
    repeats = (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None))
    unbounded = 0

    def walk(items, inside_repeat: bool) -> bool:
        nonlocal unbounded
        for op, av in items:
            if op in (C.GROUPREF, C.GROUPREF_EXISTS):
                return False
            if op in repeats and op is not None:
                lo, hi, sub = av
                big = hi is C.MAXREPEAT or hi > 100
                if big:
                    if inside_repeat:
                        return False  # (a+)+ and friends
                    unbounded += 1
                if not walk(sub, inside_repeat or big):
                    return False
            elif op is C.SUBPATTERN:
                if not walk(av[-1], inside_repeat):
                    return False
            elif op is C.BRANCH:
                if inside_repeat:
                    # (a|aa)* backtracks exponentially; alternatives that start with
                    # distinct literals ((foo|bar)*) cannot overlap.
                    firsts = [alt[0] if len(alt) else None for alt in av[1]]
                    if any(f is None or f[0] is not C.LITERAL for f in firsts) \
                            or len({f[1] for f in firsts}) != len(firsts):
                        return False
                for alt in av[1]:
                    if not walk(alt, inside_repeat):
                        return False
            elif op in (C.ASSERT, C.ASSERT_NOT):
                if not walk(av[1], inside_repeat):
                    return False
        return True

    try:
        if not walk(list(tree), False):
            return None
    except (RecursionError, TypeError, ValueError):
        return None
    anchored = bool(tree) and tree[0] == (C.AT, C.AT_BEGINNING)
    return compiled, unbounded + (0 if anchored else 1)


def pattern_checker(pattern: str, length: int):
    """The compiled ``pattern`` when checking a text of ``length`` characters stays
    within PATTERN_STEP_BUDGET, else None (not checked here)."""
    found = _pattern_cost(pattern)
    if found is None:
        return None
    compiled, exponent = found
    if exponent and max(length, 1) ** exponent > PATTERN_STEP_BUDGET:
        return None
    return compiled


def _check_text(field, value, issues: _Issues) -> None:
    if field.type == "secret" and hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if field.type == "secret":
        register_secret(value)  # never shown in an error, even when a server echoes it
    shown = _show(field, value)
    if not isinstance(value, str):
        issues.add(value, "type", f"{shown} is not text")
        return
    if field.type == "secret":
        return
    if len(value) < field.min_length:
        issues.add(value, "min_length", f"{shown} is shorter than {field.min_length} "
                                        "characters")
    if field.max_length is not None and len(value) > field.max_length:
        issues.add(value, "max_length", f"{shown} is longer than {field.max_length} "
                                        "characters")
    if field.pattern:
        compiled = pattern_checker(field.pattern, len(value))
        try:
            # JSON Schema: unanchored. None: a pattern too costly (or broken) to run here
            # on a text this long; the server still checks it.
            matches = True if compiled is None else compiled.search(value) is not None
        except (re.error, RecursionError, MemoryError):
            matches = True
        if not matches:
            issues.add(value, "pattern", f"{shown} does not match the pattern "
                                         f"{field.pattern!r}")


def _check_boolean(field, value, issues: _Issues) -> None:
    if not isinstance(value, (bool, np.bool_)):
        issues.add(value, "type", f"{_show(field, value)} is not true or false")


def _check_category(field, value, issues: _Issues) -> None:
    v = value.item() if isinstance(value, np.generic) else value
    # Only a scalar can be a choice (an array compared to one is an array, not a yes/no).
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        for choice in field.choices:
            if isinstance(choice, str) == isinstance(v, str) and choice == v:
                return
    issues.add(value, "choices", f"{describe(value)} is not one of "
                                 f"{describe(field.choices, 80)}")


def _numbers(field, value, issues: _Issues, length: Optional[int]) -> Optional[list]:
    """The value as a flat list of finite numbers, or None after adding issues."""
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.ndim == 1 else value
    if not isinstance(value, (list, tuple)):
        issues.add(value, "type", f"{describe(value)} is not a list of numbers")
        return None
    if length is not None and len(value) != length:
        issues.add(value, "length", f"{describe(value)} has {len(value)} numbers, "
                                    f"expected {length}")
        return None
    out = []
    for i, v in enumerate(value):
        try:
            f = float(v) if _is_number(v) else math.nan
        except OverflowError:
            f = math.nan
        if not math.isfinite(f):
            issues.add(value, "type", f"item {i} ({describe(v)}) is not a finite number")
            return None
        out.append(f)
    return out


def _check_vector(field, value, issues: _Issues) -> None:
    _numbers(field, value, issues, field.length)


def _check_normalised(nums: list, value, issues: _Issues) -> bool:
    if all(0.0 <= v <= 1.0 for v in nums):
        return True
    issues.add(value, "normalised", f"{describe(value)} is not normalised: every coordinate "
                                    "must be between 0 and 1")
    return False


def _check_point(field, value, issues: _Issues) -> None:
    nums = _numbers(field, value, issues, 2)
    if nums is not None:
        _check_normalised(nums, value, issues)


def _check_box(field, value, issues: _Issues) -> None:
    nums = _numbers(field, value, issues, 4)
    if nums is None or not _check_normalised(nums, value, issues):
        return
    if not (nums[0] < nums[2] and nums[1] < nums[3]):
        issues.add(value, "order", f"{describe(value)} needs xmin < xmax and ymin < ymax "
                                   "([xmin, ymin, xmax, ymax])")


def _check_landmarks(field, value, issues: _Issues) -> None:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        issues.add(value, "type", f"{describe(value)} is not a list of [x, y] points")
        return
    if field.length and len(value) != field.length:
        issues.add(value, "length", f"has {len(value)} landmarks, expected {field.length}")
    for i, point in enumerate(value):
        sub = _Issues(field, f"{issues.name}[{i}]")
        nums = _numbers(field, point, sub, 2)
        if nums is not None:
            _check_normalised(nums, point, sub)
        issues.items.extend(sub.items)


def _check_array(field, value, issues: _Issues) -> None:
    if isinstance(value, np.ndarray) and field.item.type not in ("image", "segmentation"):
        value = list(value)
    if not isinstance(value, (list, tuple)):
        issues.add(value, "type", f"{describe(value)} is not a list")
        return
    n = len(value)
    if n < field.min_length:
        issues.add(value, "min_length", f"has {n} items, fewer than the minimum "
                                        f"{field.min_length}")
    if field.max_length is not None and n > field.max_length:
        issues.add(value, "max_length", f"has {n} items, more than the maximum "
                                        f"{field.max_length}")
    for i, item in enumerate(value):
        item_name = f"{issues.name}[{i}]"
        if item is None:
            issues.items.append(FieldIssue(item_name, None, "required", "has no value"))
        else:
            issues.items.extend(validate_value(field.item, item, item_name))


def _check_size(field, height: int, width: int, value, issues: _Issues) -> None:
    for axis, size in (("width", width), ("height", height)):
        exact = getattr(field, axis)
        low, high = getattr(field, f"min_{axis}"), getattr(field, f"max_{axis}")
        if exact is not None and size != exact:
            issues.add(value, axis, f"image {axis} {size} is not the required {exact}")
        if low is not None and size < low:
            issues.add(value, axis, f"image {axis} {size} is below the minimum {low}")
        if high is not None and size > high:
            issues.add(value, axis, f"image {axis} {size} is above the maximum {high}")


def _check_image(field, value, issues: _Issues) -> None:
    if isinstance(value, np.ndarray) and value.ndim == 3 and not 1 <= value.shape[2] <= 4:
        issues.add(value, "channels", f"{describe(value)} has {value.shape[2]} channels; an "
                   f"image has 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA), and is "
                   f"converted to the {field.channels} this field takes")
        return
    try:
        arr = image_array(value, issues.name)
    except CodecError as e:
        issues.add(value, "type", e.message.split(": ", 1)[-1])
        return
    _check_size(field, arr.shape[0], arr.shape[1], value, issues)


def _check_segmentation(field, value, issues: _Issues) -> None:
    try:
        ids = segmentation_ids(field, value, issues.name)
    except CodecError as e:
        issues.add(value, "type", e.message.split(": ", 1)[-1])
        return
    _check_size(field, ids.shape[0], ids.shape[1], value, issues)
    known = label_ids(field)
    unknown = np.setdiff1d(np.unique(ids), np.array(sorted(known.values()), dtype=np.int64))
    if unknown.size:
        issues.add(value, "labels", f"label ids {describe(unknown.tolist())} are not among "
                                    f"the labels {describe(known, 80)}")


def _check_file(field, value, issues: _Issues) -> None:
    if isinstance(value, (str, os.PathLike, FileValue, bytes)):
        if isinstance(value, str) and not value:
            issues.add(value, "required", "the file path is empty")
        return
    issues.add(value, "type", f"{describe(value)} is not a file path, URL or FileValue")


_CHECKS = {
    "image": _check_image,
    "text": _check_text,
    "secret": _check_text,
    "number": _check_number,
    "integer": _check_number,
    "boolean": _check_boolean,
    "category": _check_category,
    "vector": _check_vector,
    "array": _check_array,
    "file": _check_file,
    "segmentation": _check_segmentation,
    "image_point": _check_point,
    "image_bounding_box": _check_box,
    "image_landmarks": _check_landmarks,
    # "any": passed through unchecked
}


# --------------------------------------------------------------------------- all inputs

def _normalise(field, value: Any) -> Any:
    """Plain Python types for what goes on: numpy scalars unwrapped, tuples as lists."""
    if isinstance(value, np.generic):
        value = value.item()
    t = field.type
    if t == "integer" and isinstance(value, float):
        return int(value)
    if t == "number" and isinstance(value, int):
        return float(value)
    if t in ("vector", "image_point", "image_bounding_box"):
        return [float(v) for v in value]
    if t == "image_landmarks":
        return [[float(x), float(y)] for x, y in value]
    if t == "array" and isinstance(value, tuple):
        return list(value)
    return value


def validate_inputs(fields: list, values: Mapping, *, protocol: Optional[str] = None) -> dict:
    """Check ``values`` against ``fields``; return a complete dict (defaults filled in, see
    ``default_value``; keys without value or default are left out). Raises
    SpecValidationError listing every issue: unknown keys, missing required values and
    every broken rule. ``protocol`` ("runway" | "cog") defaults to ``guess_protocol``."""
    if not isinstance(values, Mapping):
        raise SpecValidationError([FieldIssue("inputs", describe(values), "type",
                                              f"{describe(values)} is not a dict of values")])
    protocol = protocol or guess_protocol(fields)
    by_name = {f.name: f for f in fields}
    issues: list[FieldIssue] = []
    for key in values:
        if key not in by_name:
            known = ", ".join(by_name) or "none"
            issues.append(FieldIssue(str(key), None, "unknown",
                                     f"is not an input of this model (inputs: {known})"))
    out: dict[str, Any] = {}
    for field in fields:
        value = values.get(field.name)
        if value is None:
            default = default_value(field, protocol)
            if default is not MISSING:
                out[field.name] = default
            elif field.required or (protocol == "runway" and field.type in _RUNWAY_NEEDS_VALUE):
                issues.append(FieldIssue(field.name, None, "required",
                                         "is required and has no value"))
            elif protocol == "runway" and field.type == "array" and field.min_length > 0:
                issues.append(FieldIssue(field.name, None, "min_length",
                                         f"needs at least {field.min_length} items"))
            continue
        found = validate_value(field, value)
        issues.extend(found)
        if not found:
            out[field.name] = _normalise(field, value)
    if issues:
        raise SpecValidationError(issues, hint="Change these values and run again.")
    return out
