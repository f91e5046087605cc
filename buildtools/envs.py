"""Python environments for development and tests, each from a hashed lock.

- ``.venv``: Python 3.11 + bpy 5.0 (real Blender as a module) + the add-on's
  dependencies + the test tools. Everything but the version matrix runs here.
- ``.venv-bpy42``: Python 3.11 + bpy 4.2 LTS, only to install and register the
  built extension in the oldest supported Blender.
- ``.venv-bpy52``: Python 3.13 + bpy 5.2, the newest Blender on the index.
- ``.venv-cog``: Python 3.11 + the Cog server, for the test predictors.
- ``.venv-farm``: Python 3.11 + ``openjd-cli``, to check and run the Open Job
  Description template in ``farm/openjd`` (tests/farm).
- ``.venv-runway-sdk``: Python 3.11 + the real Runway Model SDK (runway-python
  0.6.1, vendored in ../shared/vendor: it was never on the package index) with
  the Flask 1.x it needs, for the Runway client's tests against real SDK servers.

Locks live in ``buildtools/locks/``; ``python3 build.py lock`` regenerates them
(pip download + sha256 of every file), installs use ``--require-hashes``. An
archive on no index (``Archive``) is checked by its own sha256 and installed
after the lock without dependencies; its requirements are resolved into the lock.
Standard library only.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "buildtools" / "locks"


@dataclass(frozen=True)
class Archive:
    """A source archive from no package index, pinned by its sha256."""
    path: Path
    sha256: str

    def check(self) -> Path:
        if not self.path.is_file():
            raise SystemExit(f"{self.path} is missing; it is vendored beside the repository "
                             "(../shared/vendor), check out the shared folder too.")
        if _sha256(self.path) != self.sha256:
            raise SystemExit(f"{self.path} is not the pinned archive (sha256 differs).")
        return self.path

    def requirements(self) -> list[str]:
        """The archive's own requirements.txt, so that the lock holds them."""
        with tarfile.open(self.check()) as tar:
            member = next((m for m in tar.getmembers()
                           if m.name.count("/") == 1 and m.name.endswith("/requirements.txt")),
                          None)
            text = tar.extractfile(member).read().decode() if member else ""
        return [line.split("#")[0].strip() for line in text.splitlines()
                if line.split("#")[0].strip()]


@dataclass(frozen=True)
class Env:
    name: str  # folder under the repository root
    python: str  # "3.11" / "3.13"
    requirements: tuple[str, ...]
    archives: tuple[Archive, ...] = ()  # installed after the lock, --no-deps
    source: tuple[str, ...] = ()  # packages with no wheel for this Python: locked as source

    @property
    def path(self) -> Path:
        return ROOT / self.name

    @property
    def lock(self) -> Path:
        return LOCKS / f"{self.name.lstrip('.')}-py{self.python.replace('.', '')}.txt"

    @property
    def python_bin(self) -> Path:
        return self.path / "bin" / "python"


DEV = Env(".venv", "3.11", (
    "bpy==5.0.1", "pydantic==2.12.5", "pillow==12.1.1", "docker==7.1.0",
    "pytest==9.2.0", "hypothesis==6.170.17",
    "mutmut==3.8.1",  # `build.py mutate` (buildtools/mutation.py)
))
# numpy as Blender 4.2 itself ships it (the wheel leaves it unpinned).
BPY42 = Env(".venv-bpy42", "3.11", ("bpy==4.2.23", "numpy==1.26.4"))
BPY52 = Env(".venv-bpy52", "3.13", ("bpy==5.2.3",))
# Runs the test predictors in tests/model_servers/cog (real Cog servers) and writes
# their schemas: the Cog server plus what those predictors import.
COG = Env(".venv-cog", "3.11", ("cog==0.23.1", "numpy==2.4.6", "pillow==13.0.0"))
# Checks and runs the Open Job Description template (farm/openjd) like a worker would.
FARM = Env(".venv-farm", "3.11", ("openjd-cli==0.8.0",))
# Real Runway Model SDK servers (tests/servers/runway_sdk_real): the vendored SDK and
# the pins its README gives (newer Flask, Werkzeug and Jinja break it).
RUNWAY_SDK_ARCHIVE = Archive(
    ROOT.parent / "shared" / "vendor" / "runway-model-sdk" / "runway-model-sdk-0.6.1-18ed07e.tar.gz",
    "edfcf6a0b09e1dc3893536b3994304d4c77face45518e203d3fff7dc3770c809")
RUNWAY_SDK = Env(".venv-runway-sdk", "3.11", (
    "Flask==1.1.4", "Werkzeug==1.0.1", "Jinja2==2.11.3", "MarkupSafe==2.0.1",
    "itsdangerous==1.1.0", "click==7.1.2", "Flask-Cors==3.0.10", "Flask-Compress==1.9.0",
    "urllib3<2", "certifi", "websocket-client",
), archives=(RUNWAY_SDK_ARCHIVE,), source=("markupsafe",))  # MarkupSafe 2.0.1: no cp311 wheel
ALL = (DEV, BPY42, BPY52, COG, FARM, RUNWAY_SDK)


def find_python(version: str) -> str:
    """A CPython of ``version`` on this machine that can make venvs, found as the
    add-on's runtime finds one (runtimes/interpreters.py, standard library only),
    or a clear error."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from runway_addon.core.runtimes.interpreters import install_hint, locate_python

    found = locate_python(version)
    if not found:
        raise SystemExit(f"Python {version} is needed but was not found. {install_hint(version)}")
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock(env: Env) -> None:
    """Resolve ``env.requirements`` for this machine and write the hashed lock."""
    py = find_python(env.python)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([py, "-m", "pip", "download", "-qq", "--disable-pip-version-check",
                        "--only-binary=:all:", *(f"--no-binary={n}" for n in env.source),
                        "-d", tmp, *env.requirements,
                        *(r for a in env.archives for r in a.requirements())], check=True)
        lines = []
        for f in sorted(Path(tmp).iterdir()):
            if f.name.endswith(".whl"):
                name, version = f.name.split("-")[:2]
            else:  # a source archive: NAME-VERSION.tar.gz
                name, version = f.name.removesuffix(".tar.gz").removesuffix(".zip").rsplit("-", 1)
            lines.append(f"{name.lower().replace('_', '-')}=={version} --hash=sha256:{_sha256(f)}")
    LOCKS.mkdir(parents=True, exist_ok=True)
    env.lock.write_text("# Generated by `python3 build.py lock`; do not edit by hand.\n"
                        + "\n".join(lines) + "\n")
    print(f"  locked {env.name}: {len(lines)} packages -> {env.lock.relative_to(ROOT)}")


def ensure(env: Env, log=print) -> Path:
    """Create or update ``env`` from its lock; quick when already up to date."""
    stamp = env.path / ".runway-lock.sha256"
    want = _sha256(env.lock) + "".join(a.sha256 for a in env.archives)
    if env.python_bin.exists() and stamp.exists() and stamp.read_text() == want:
        return env.python_bin
    log(f"  setting up {env.name} (Python {env.python}) from {env.lock.relative_to(ROOT)} ...")
    if not env.python_bin.exists():
        subprocess.run([find_python(env.python), "-m", "venv", str(env.path)], check=True)
    subprocess.run([str(env.python_bin), "-m", "pip", "install", "-qq",
                    "--disable-pip-version-check", "--no-deps", "--require-hashes",
                    "-r", str(env.lock)], check=True)
    for archive in env.archives:
        subprocess.run([str(env.python_bin), "-m", "pip", "install", "-qq",
                        "--disable-pip-version-check", "--no-deps", str(archive.check())],
                       check=True)
    stamp.write_text(want)
    return env.python_bin

