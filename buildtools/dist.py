"""Stage, validate and build the extension zips with Blender's own tool.

The validator and builder are ``blender_ext.py`` from the bpy package (the
same code behind ``blender --command extension build``), and tags are checked
against Blender's own list (``_bpy_internal/extensions/tags.py``).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import envs, wheels

ROOT = envs.ROOT
STAGE = ROOT / "build" / "stage"
DIST = ROOT / "dist"
PLATFORMS = list(wheels.PLATFORMS)


def _bpy_scripts(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import bpy, os; print(bpy.utils.resource_path('LOCAL'))"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout.strip().splitlines()[-1]
    return Path(out) / "scripts"


def blender_ext_tool(python: Path) -> tuple[Path, Path]:
    """(blender_ext.py, tags.py) shipped inside the bpy module of ``python``."""
    scripts = _bpy_scripts(python)
    tool = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    for p in (tool, tags):
        if not p.exists():
            raise SystemExit(f"Blender's extension tool is missing: {p}")
    return tool, tags


def stage(wheel_files: list[Path]) -> Path:
    if STAGE.exists():
        shutil.rmtree(STAGE)
    shutil.copytree(ROOT / "runway_addon", STAGE,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "blender_manifest.toml", STAGE / "blender_manifest.toml")
    shutil.copy2(ROOT / "LICENSE", STAGE / "LICENSE")
    # The built-in shelf: every model folder with a card, as the runtime needs it
    # (.cog/openapi_schema.json included); the test data and tools stay behind.
    for card in sorted((ROOT / "models").glob("*/card.json")):
        shutil.copytree(card.parent, STAGE / "models" / card.parent.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (STAGE / "wheels").mkdir()
    for whl in wheel_files:
        shutil.copy2(whl, STAGE / "wheels" / whl.name)
    return STAGE


def build(log=print) -> list[Path]:
    python = envs.ensure(envs.DEV, log=log)
    tool, tags = blender_ext_tool(python)
    wheel_files = wheels.fetch(log=log)
    src = stage(wheel_files)
    run = lambda *args: subprocess.run([str(python), str(tool), *args], capture_output=True,
                                       text=True)
    proc = run("validate", f"--valid-tags={tags}", str(src))
    if proc.returncode != 0:
        raise SystemExit(f"Blender's validator refused the extension:\n{proc.stdout}{proc.stderr}")
    if DIST.exists():
        shutil.rmtree(DIST)
    DIST.mkdir()
    proc = run("build", "--source-dir", str(src), "--output-dir", str(DIST), "--split-platforms",
               f"--valid-tags={tags}")
    if proc.returncode != 0:
        raise SystemExit(f"Blender's builder failed:\n{proc.stdout}{proc.stderr}")
    zips = sorted(DIST.glob("*.zip"))
    got = {p for p in PLATFORMS if any(z.stem.endswith(p.replace("-", "_")) for z in zips)}
    if got != set(PLATFORMS):
        raise SystemExit(f"expected one zip per platform {PLATFORMS}, got {[z.name for z in zips]}")
    for z in zips:
        proc = run("validate", f"--valid-tags={tags}", str(z))
        if proc.returncode != 0:
            raise SystemExit(f"Blender's validator refused {z.name}:\n{proc.stdout}{proc.stderr}")
    return zips


def zip_for(platform: str) -> Path:
    matches = sorted(DIST.glob(f"*-{platform.replace('-', '_')}.zip"))
    if not matches:
        raise FileNotFoundError(f"no {platform} zip in {DIST}; run `python3 build.py dist`")
    return matches[0]
