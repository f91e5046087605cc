"""Finding a Python of the version a model (or a development environment) asks
for: the one finder for the runtime and the build tools. Standard library only,
and no package-relative import at module level: ``buildtools/envs.py`` uses it
before any virtual environment exists.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

_WINDOWS = os.name == "nt"
_found: dict[str, str] = {}


def clean_env() -> dict[str, str]:
    """This environment without what points Python elsewhere (Blender's own
    PYTHONPATH/PYTHONHOME must not reach another interpreter)."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    return env


def _candidates(version: str) -> Iterator[str]:
    exe = f"python{version}"
    found = shutil.which(exe)
    if found:
        yield found
    # pyenv keeps every version under $PYENV_ROOT/versions/X.Y.Z even when the
    # shim on PATH points at another one.
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    versions = sorted((pyenv_root / "versions").glob(f"{version}.*"),
                      key=lambda p: [int(x) if x.isdigit() else 0 for x in
                                     p.name.split(".")], reverse=True)
    for v in versions:
        yield str(v / "bin" / exe)
    if _WINDOWS and shutil.which("py"):
        yield f"py -{version}"
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            yield found
    yield sys.executable


def locate_python(version: str) -> Optional[str]:
    """The path of a Python ``version`` ("3.11") that can create venvs, or None.

    Looks on PATH (``python3.11``), in pyenv's versions, the ``py`` launcher on
    Windows, then ``python3``/``python``/this interpreter if their version fits.
    """
    if version in _found:
        return _found[version]
    probe = ("import sys, venv, ensurepip; "
             "print('%d.%d' % sys.version_info[:2]); print(sys.executable)")
    for cand in _candidates(version):
        argv = cand.split(" ") if cand.startswith("py -") else [cand]
        try:
            out = subprocess.run([*argv, "-c", probe], capture_output=True, text=True,
                                 timeout=30, env=clean_env())
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = out.stdout.split()
        if out.returncode == 0 and len(lines) >= 2 and lines[0] == version:
            # The real executable, not a pyenv shim: quicker, and venv's `home`.
            _found[version] = lines[1]
            return lines[1]
    return None


def install_hint(version: str) -> str:
    return (f"Install Python {version} (python.org, your package manager such as "
            f"'apt install python{version} python{version}-venv', or 'pyenv install {version}') "
            f"and make 'python{version}' available on PATH.")


def find_python(version: str) -> str:
    """``locate_python``, or RuntimeFailed saying how to install that version."""
    found = locate_python(version)
    if found:
        return found
    from .base import RuntimeFailed  # here: the build tools import this file without pydantic
    raise RuntimeFailed(f"The model needs Python {version}, which was not found.",
                        hint=install_hint(version))
