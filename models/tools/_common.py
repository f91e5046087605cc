"""Things every tool in models/tools shares: where model folders live, the lock hash
and the env path derived from it.

The folder contract (see models/README.md): a model is a folder ``models/<name>/``
with ``predict.py``, ``cog.yaml``, ``requirements.txt``, ``requirements.lock`` and
``.cog/openapi_schema.json``. Its environment is
``.cache/model-envs/<name>-<first 12 hex of sha256(requirements.lock)>/``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1]
ROOT = MODELS.parent
ENVS = Path(os.environ.get("RUNWAY_MODEL_ENVS", ROOT / ".cache" / "model-envs"))
STAMP = ".runway-lock-sha256"
PYTHON = os.environ.get("RUNWAY_MODEL_PYTHON", "python3.11")


def model_dir(name: str) -> Path:
    """A model folder (it has a cog.yaml)."""
    d = MODELS / name
    if not (d / "cog.yaml").is_file():
        raise SystemExit(f"no model folder {d} (it needs a cog.yaml)")
    return d


def all_models() -> list[str]:
    return sorted(p.parent.name for p in MODELS.glob("*/cog.yaml"))


def names_from_args(args: list[str]) -> list[str]:
    if not args:
        raise SystemExit("give a model name or --all")
    return all_models() if "--all" in args else args


def lock_hash(name: str) -> str:
    return hashlib.sha256((model_dir(name) / "requirements.lock").read_bytes()).hexdigest()


def env_dir(name: str) -> Path:
    return ENVS / f"{name}-{lock_hash(name)[:12]}"


def env_python(name: str) -> Path:
    return env_dir(name) / "bin" / "python"


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total
