"""Docker images of Cog predictors, built without pulling anything.

No registry is needed: the base is a Debian root file system made once with
``debootstrap --variant=minbase`` (bookworm: Python 3.11), the model's wheels
are downloaded on the host with ``pip download --require-hashes``, installed
offline into a venv inside a copy of that root (chroot), and the result is
turned into an image with ``tar | docker import``. The image runs the Cog HTTP
server on 0.0.0.0:5000 inside the container and carries the model's OpenAPI
schema in the ``run.cog.openapi_schema`` label, as ``cog build`` images do.

    from buildtools import images
    root = images.build_base_root()                      # cached once
    info = images.build_model_image(Path("models/x"), "runway-for-blender/x:latest")

A model folder is a Cog predictor: ``predict.py``, ``cog.yaml``,
``requirements.lock`` (pip --require-hashes, including cog) and
``.cog/openapi_schema.json``. Needs root (debootstrap, chroot) and the docker
CLI. Standard library only.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

CACHE = Path(os.environ.get("RUNWAY_IMAGE_CACHE", "/var/cache/runway-for-blender"))
SUITE = "bookworm"  # Python 3.11, the ABI the add-on's Blenders use too
MIRROR = os.environ.get("RUNWAY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("python3", "python3-venv")
# Bump when the recipe changes: it is part of every stamp and content hash.
RECIPE = "2"

VENV = "/opt/venv"
MODEL_DIR = "/model"
PORT = 5000
LABEL_HASH = "org.runwayforblender.content-hash"
LABEL_MODEL = "org.runwayforblender.model"
LABEL_SCHEMA = "run.cog.openapi_schema"

# pip does not expand manylinux_2_X tags on its own: list every glibc up to
# bookworm's 2.36, newest first, plus the legacy aliases.
PLATFORMS = ([f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
             + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])

# Trimmed from the root: nothing at run time reads them.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
        "usr/share/lintian", "var/cache/apt", "var/lib/apt/lists",
        "var/cache/debconf", "var/log")

_CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "LANG": "C.UTF-8", "PIP_NO_CACHE_DIR": "1",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONFIG_FILE": "/dev/null"}


def _log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


@contextmanager
def _locked(cache: Path):
    """One builder at a time per cache (pytest and build.py may run together)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    _log("installing debootstrap with apt-get")
    _run(["apt-get", "update", "-qq"])
    _run(["apt-get", "install", "-y", "-qq", "debootstrap"],
         env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def _trim(root: Path) -> None:
    for rel in TRIM:
        target = root / rel
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir()  # some tools expect the folder itself


def _base_key() -> str:
    return f"{SUITE}-{RECIPE}-" + ",".join(BASE_PACKAGES)


def build_base_root(cache: Path = CACHE) -> Path:
    """The shared Debian root (built once; later calls only read the stamp)."""
    cache = Path(cache)
    root = cache / f"root-{SUITE}"
    stamp = cache / f"root-{SUITE}.stamp"  # outside the root: it must not land in images
    with _locked(cache):
        if stamp.is_file() and stamp.read_text().strip() == _base_key() and root.is_dir():
            return root
        _ensure_debootstrap()
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix="root-build-", dir=cache))
        try:
            _log(f"debootstrap {SUITE} (minbase + {', '.join(BASE_PACKAGES)}) ...")
            _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                  SUITE, tmp / "root", MIRROR], stdout=subprocess.DEVNULL)
            _trim(tmp / "root")
            # Build aside, then swap in with a rename so no half-built root is ever used.
            if root.exists():
                shutil.rmtree(root)
            os.rename(tmp / "root", root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        stamp.write_text(_base_key() + "\n")
        _log(f"base root ready in {time.monotonic() - t0:.0f} s: {root}")
        return root


def _skipped(name: str) -> bool:
    """Not part of a model: caches, virtual environments, hidden files (``.cog`` is
    the exception: it holds the schema). A model folder may hold a local runtime's
    environment cache, which must neither enter the image nor its hash."""
    return (name == "__pycache__" or name.endswith(".pyc")
            or (name.startswith(".") and name != ".cog"))


def _model_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.rglob("*") if p.is_file()
                  and not any(_skipped(part) for part in p.relative_to(model_dir).parts))


def content_hash(model_dir: Path) -> str:
    """What the image is made of: the recipe, the base and every model file."""
    h = hashlib.sha256(f"{_base_key()}\n".encode())
    for p in _model_files(model_dir):
        h.update(str(p.relative_to(model_dir)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def predictor_ref(model_dir: Path) -> str:
    """``predict.py:Predictor`` from cog.yaml's ``predict:`` line (the runtime's reader)."""
    from runway_addon.core.runtimes.cog_yaml import read_cog_yaml
    return read_cog_yaml(model_dir)[1]


def download_wheels(lock: Path, cache: Path = CACHE) -> Path:
    """Every wheel of ``lock`` for CPython 3.11 manylinux x86_64, cached by the lock's hash."""
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    dest = Path(cache) / "wheels" / digest
    done = dest / ".complete"
    if done.is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-qq", "--require-hashes", "--no-deps",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
           "--abi", "cp311", "--abi", "abi3", "--abi", "none", "-d", dest, "-r", lock]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    _log(f"downloading wheels for {lock}")
    _run(cmd)
    done.write_text("")
    return dest


def _docker_json(*args) -> Optional[list]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def image_labels(tag: str) -> Optional[dict]:
    """The labels of a local image, or None when there is no such image."""
    data = _docker_json("image", "inspect", tag)
    if not data:
        return None
    return (data[0].get("Config") or {}).get("Labels") or {}


def image_size(tag: str) -> int:
    data = _docker_json("image", "inspect", tag)
    return int(data[0]["Size"]) if data else 0


def _dockerfile_quote(text: str) -> str:
    """A Dockerfile double-quoted word: JSON string escapes work there, and ``$``
    must be escaped or the parser substitutes it (``$ref`` would vanish)."""
    return json.dumps(text).replace("$", "\\$")


def build_model_image(model_dir: Path, tag: str, cache: Path = CACHE, *,
                      force: bool = False) -> dict:
    """Build (or reuse) the image ``tag`` of the Cog predictor in ``model_dir``.

    Returns ``{"tag", "reused", "seconds", "size"}``; ``size`` in bytes.
    """
    model_dir = Path(model_dir).resolve()
    cache = Path(cache)
    for need in ("predict.py", "cog.yaml", "requirements.lock", ".cog/openapi_schema.json"):
        if not (model_dir / need).is_file():
            raise FileNotFoundError(f"{model_dir} has no {need}: not a buildable Cog predictor")
    t0 = time.monotonic()
    base = build_base_root(cache)
    digest = content_hash(model_dir)
    labels = image_labels(tag)
    if not force and labels and labels.get(LABEL_HASH) == digest:
        return {"tag": tag, "reused": True, "seconds": time.monotonic() - t0,
                "size": image_size(tag)}

    old = _docker_json("image", "inspect", tag)
    old_id = old[0]["Id"] if old else None
    wheels = download_wheels(model_dir / "requirements.lock", cache)
    schema = json.loads((model_dir / ".cog" / "openapi_schema.json").read_text())
    with _locked(cache):
        work = Path(tempfile.mkdtemp(prefix="image-build-", dir=cache))
        try:
            root = work / "root"
            _log(f"{tag}: copying base root and {model_dir.name}")
            _run(["cp", "-a", "--reflink=auto", base, root])
            shutil.copytree(model_dir, root / MODEL_DIR.lstrip("/"),
                            ignore=lambda _dir, names: [n for n in names if _skipped(n)])
            shutil.copytree(wheels, root / "tmp" / "wheels")
            _log(f"{tag}: installing wheels offline into {VENV}")
            chroot = ["chroot", root]
            _run(chroot + ["/usr/bin/python3", "-m", "venv", VENV], env=_CHROOT_ENV)
            _run(chroot + [f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--no-deps",
                           "--require-hashes", "--find-links", "/tmp/wheels",
                           "-r", f"{MODEL_DIR}/requirements.lock"], env=_CHROOT_ENV)
            # pip and setuptools are not needed to serve: drop them (about 15 MB).
            _run(chroot + [f"{VENV}/bin/pip", "uninstall", "--quiet", "-y", "pip", "setuptools"],
                 env=_CHROOT_ENV)
            shutil.rmtree(root / "tmp" / "wheels")
            # ensurepip's own wheels: needed for the venv above, not at run time.
            shutil.rmtree(root / "usr" / "share" / "python-wheels", ignore_errors=True)
            shutil.rmtree(root / "root" / ".cache", ignore_errors=True)

            changes = [
                f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                f"ENV PORT={PORT}",
                f"ENV COG_PREDICT_TYPE_STUB={predictor_ref(model_dir)}",
                "ENV PYTHONUNBUFFERED=1",
                "ENV LANG=C.UTF-8",
                f"WORKDIR {MODEL_DIR}",
                f"EXPOSE {PORT}/tcp",
                # The server's --host defaults to 0.0.0.0: inside the container that is
                # right; the host side is bound to 127.0.0.1 by the runtime.
                'CMD ["python", "-m", "cog.server.http", "--host", "0.0.0.0"]',
                f"LABEL {LABEL_HASH}={digest}",
                f"LABEL {LABEL_MODEL}={_dockerfile_quote(model_dir.name)}",
                f"LABEL {LABEL_SCHEMA}="
                + _dockerfile_quote(json.dumps(schema, separators=(",", ":"))),
            ]
            _log(f"{tag}: docker import")
            # /dev, /proc and /sys are provided by the engine at run time.
            tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner",
                                    "--exclude=./dev/*", "--exclude=./proc/*",
                                    "--exclude=./sys/*", "-c", "."], stdout=subprocess.PIPE)
            imp_cmd = ["docker", "import"]
            for change in changes:
                imp_cmd += ["--change", change]
            imp = subprocess.run(imp_cmd + ["-", tag], stdin=tar.stdout,
                                 stdout=subprocess.DEVNULL)
            tar.stdout.close()
            if tar.wait() != 0 or imp.returncode != 0:
                raise RuntimeError(f"docker import of {tag} failed (tar {tar.returncode}, "
                                   f"docker {imp.returncode})")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if old_id:
        # The tag moved to the new image: drop the old one unless a container uses it.
        subprocess.run(["docker", "image", "rm", old_id], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    size = image_size(tag)
    _log(f"{tag}: built in {seconds:.0f} s, {size / 1e6:.0f} MB")
    return {"tag": tag, "reused": False, "seconds": seconds, "size": size}


def default_tag(model_dir: Path) -> str:
    # The runtime decides which image a model runs as; build that one.
    from runway_addon.core.runtimes.docker import image_tag
    return image_tag(model_dir)


def main(argv=None) -> int:  # python3 -m buildtools.images MODEL_DIR [TAG]
    import argparse

    parser = argparse.ArgumentParser(description="build a Cog predictor's image offline")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("tag", nargs="?")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    info = build_model_image(args.model_dir, args.tag or default_tag(args.model_dir),
                             force=args.force)
    state = "up to date" if info["reused"] else f"built in {info['seconds']:.0f} s"
    print(f"{info['tag']}: {state}, {info['size'] / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
