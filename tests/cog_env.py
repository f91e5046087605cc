"""The Python environment that runs real Cog servers in tests.

Cog's server (coglet) starts its worker as a bare ``python``, so it needs a
venv of its own whose ``bin`` goes first on PATH. The venv is built from the
hash-pinned ``tests/cog_models/requirements.lock`` and stamped with that
file's hash, so a second call only reads the stamp.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).parent / "cog_models" / "requirements.lock"
STAMP = ".runway-lock-sha256"
PYTHON = os.environ.get("RUNWAY_COG_PYTHON", "python3.11")


def _lock_hash() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def cog_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_cog_venv(root: Path) -> Path:
    """Create or reuse ``root/.venv-cog`` from the lock; return the venv folder.

    Idempotent: when the stamp matches the lock's hash nothing runs. A venv
    with a stale or missing stamp is rebuilt from scratch so no stray package
    stays behind.
    """
    venv = Path(root) / ".venv-cog"
    want = _lock_hash()
    stamp = venv / STAMP
    if stamp.is_file() and stamp.read_text().strip() == want and cog_python(venv).exists():
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(cog_python(venv)), "-m", "pip", "install", "--quiet", "--no-deps",
         "--require-hashes", "-r", str(LOCK)],
        check=True,
    )
    stamp.write_text(want + "\n")
    return venv


if __name__ == "__main__":  # python tests/cog_env.py [ROOT]
    print(ensure_cog_venv(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1])))
