"""A model folder's ``cog.yaml``: the one reader for the runtime, the schema
inspector (``core/cog_inspect.py``, run as a bare script inside the model's
environment) and the build tools.

A small line parser rather than PyYAML: the add-on's core must not need it, and
the keys read here are plain scalars and one list. Standard library only, and
no package-relative import at module level, so the inspector can load this file
by its path.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

DEFAULT_PYTHON = "3.11"  # what Cog assumes when build.python_version is not given


@dataclass(frozen=True)
class CogConfig:
    python_version: str  # "3.11"
    predict: Optional[str]  # "predict.py:Predictor", None when the line is missing
    python_packages: tuple[str, ...] = field(default=())  # build.python_packages pins
    gpu: bool = False  # build.gpu

    @property
    def predictor(self) -> tuple[str, str]:
        """``("predict", "Predictor")``: the module name and the class or function."""
        module, _, name = (self.predict or "").partition(":")
        return re.sub(r"\.py$", "", module), name


def parse_cog_yaml(text: str) -> CogConfig:
    version = re.search(r"^\s+python_version:\s*[\"']?(\d+\.\d+)", text, re.M)
    predict = re.search(r"^predict:\s*[\"']?([^\"'\s#]+)", text, re.M)
    block = re.search(r"python_packages:\s*\n((?:[ \t]+-.*\n?)*)", text)
    packages = re.findall(r'-\s*["\']?([^"\'\s]+)', block.group(1)) if block else []
    gpu = re.search(r"^\s+gpu:\s*true\b", text, re.M | re.I)
    return CogConfig(version.group(1) if version else DEFAULT_PYTHON,
                     predict.group(1) if predict else None, tuple(packages), bool(gpu))


def load_cog_yaml(model_dir: Union[str, os.PathLike]) -> CogConfig:
    """The folder's cog.yaml, parsed; RuntimeFailed when it cannot be read or
    names no predictor."""
    from .base import RuntimeFailed  # here: the inspector loads this file on its own

    path = Path(model_dir) / "cog.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RuntimeFailed(f"{path} cannot be read ({e.strerror})",
                            hint="Choose a model folder that holds cog.yaml and predict.py.")
    except UnicodeDecodeError as e:
        raise RuntimeFailed(f"{path} is not UTF-8 text (byte {e.start} cannot be read)",
                            hint="Save cog.yaml as UTF-8.") from None
    config = parse_cog_yaml(text)
    if not config.predict:
        raise RuntimeFailed(f"{path} has no 'predict:' line",
                            hint='Add for example: predict: "predict.py:Predictor"')
    return config


def read_cog_yaml(model_dir: Union[str, os.PathLike]) -> tuple[str, str]:
    """``(python_version, predictor_ref)`` from the folder's cog.yaml."""
    config = load_cog_yaml(model_dir)
    return config.python_version, config.predict
