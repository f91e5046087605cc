"""Create the Python environment of a model folder from its requirements.lock.

Usage::

    python models/tools/env.py NAME [NAME ...] | --all

The venv goes to ``.cache/model-envs/<name>-<12 hex of sha256(requirements.lock)>/``
(python3.11, or $RUNWAY_MODEL_PYTHON), installed with
``pip install --no-deps --require-hashes --only-binary=:all: -r requirements.lock``.
It is built in a temporary sibling folder and renamed into place, then stamped with
the lock's full hash: a second call only reads the stamp. Prints the env path and
timings. Envs of the same model with an older lock hash are left alone (remove
them by hand or with --prune).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ENVS, PYTHON, STAMP, dir_size, env_dir, lock_hash, model_dir, names_from_args  # noqa: E402


def is_ready(name: str) -> bool:
    d = env_dir(name)
    stamp = d / STAMP
    return (stamp.is_file() and stamp.read_text().strip() == lock_hash(name)
            and (d / "bin" / "python").exists())


def ensure_env(name: str, quiet: bool = False) -> Path:
    d = env_dir(name)
    if is_ready(name):
        if not quiet:
            print(f"{name}: ready {d}")
        return d
    lock = model_dir(name) / "requirements.lock"
    tmp = d.with_name(d.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(d, ignore_errors=True)
    ENVS.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    subprocess.run([PYTHON, "-m", "venv", str(tmp)], check=True)
    t1 = time.monotonic()
    subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--no-deps", "--require-hashes", "--only-binary=:all:",
                    "-r", str(lock)], check=True)
    t2 = time.monotonic()
    # venv scripts hold absolute paths; rewrite the temporary folder name in them.
    for script in (tmp / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            try:
                text = script.read_text()
            except UnicodeDecodeError:
                continue
            if str(tmp) in text:
                script.write_text(text.replace(str(tmp), str(d)))
    cfg = tmp / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace(str(tmp), str(d)))
    tmp.rename(d)
    (d / STAMP).write_text(lock_hash(name) + "\n")
    print(f"{name}: built {d}\n  venv {t1 - t0:.1f} s, install {t2 - t1:.1f} s, "
          f"size {dir_size(d) / 1e6:.0f} MB")
    return d


def prune(name: str) -> None:
    keep = env_dir(name)
    for old in ENVS.glob(f"{name}-*"):
        if old != keep and old.name[len(name) + 1:].isalnum():
            shutil.rmtree(old)
            print(f"{name}: removed old env {old}")


def main(argv: list[str]) -> int:
    for n in names_from_args([a for a in argv if a != "--prune"]):
        ensure_env(n)
        if "--prune" in argv:
            prune(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
