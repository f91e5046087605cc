#!/usr/bin/env python3
"""Build, test and demo Runway for Blender. Standard library only.

    python3 build.py setup     # .venv with real Blender (bpy 5.0) and the test tools
    python3 build.py lock      # re-resolve wheels.lock.json and the environment locks
    python3 build.py dist      # the extension zips, one per platform, in dist/
    python3 build.py test [pytest args]   # the whole suite (sets up what is missing)
    python3 build.py demo      # the main job on the built-in default
    python3 build.py models lock|schema|env|serve|docker ...   # model folders
    python3 build.py jobschema # docs/job.schema.json from the job file's pydantic model
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from buildtools import dist, envs, wheels  # noqa: E402


def _timed(label):
    def wrap(fn):
        def inner(*a, **kw):
            t0 = time.monotonic()
            result = fn(*a, **kw)
            print(f"{label} done in {time.monotonic() - t0:.1f} s")
            return result
        return inner
    return wrap


@_timed("setup")
def cmd_setup(_args) -> int:
    python = envs.ensure(envs.DEV)
    print(f"ready: {python}")
    return 0


@_timed("lock")
def cmd_lock(_args) -> int:
    print("resolving extension wheels for every platform and Python ABI ...")
    wheels.lock()
    for env in envs.ALL:
        envs.lock(env)
    return 0


@_timed("dist")
def cmd_dist(_args) -> int:
    zips = dist.build()
    for z in zips:
        print(f"  {z.relative_to(ROOT)}  {z.stat().st_size / 1e6:.1f} MB")
    return 0


def _prepare_tests() -> None:
    for env in envs.ALL:
        envs.ensure(env)
    dist.build()


@_timed("test")
def cmd_test(args) -> int:
    _prepare_tests()
    env = dict(os.environ, RUNWAY_DIST_DIR=str(dist.DIST), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([str(envs.DEV.python_bin), "-m", "pytest", *args.pytest_args],
                          cwd=ROOT, env=env)
    if proc.returncode == 5:
        print("pytest collected no tests: that is a failure here.")
        return 1
    return proc.returncode


@_timed("demo")
def cmd_demo(args) -> int:
    envs.ensure(envs.DEV)
    zips = dist.build()
    linux = dist.zip_for("linux-x64")
    print(f"built {len(zips)} extension zips")
    out = Path(args.out).resolve()
    cmd = [str(envs.DEV.python_bin), str(ROOT / "demo" / "main_job.py"), "--",
           "--zip", str(linux), "--out", str(out)]
    return subprocess.run(cmd, cwd=ROOT).returncode


def cmd_models(argv) -> int:
    """Model folders (buildtools/cogmodels.py), run inside .venv: it uses the
    add-on's own runtime to build environments and serve models."""
    python = envs.ensure(envs.DEV)
    return subprocess.run([str(python), "-m", "buildtools.cogmodels", *argv], cwd=ROOT).returncode


JOB_SCHEMA = ROOT / "docs" / "job.schema.json"


def cmd_jobschema(_args) -> int:
    """Write docs/job.schema.json from runway_addon.core.jobfile (pydantic: in .venv)."""
    python = envs.ensure(envs.DEV)
    code = ("import sys; from runway_addon.core import jobfile; "
            "open(sys.argv[1], 'w', encoding='utf-8').write(jobfile.schema_text())")
    proc = subprocess.run([str(python), "-c", code, str(JOB_SCHEMA)], cwd=ROOT)
    if proc.returncode == 0:
        print(f"wrote {JOB_SCHEMA}")
    return proc.returncode


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["models"]:
        return cmd_models(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create .venv (bpy + test tools)").set_defaults(fn=cmd_setup)
    sub.add_parser("lock", help="re-resolve all pinned locks").set_defaults(fn=cmd_lock)
    sub.add_parser("dist", help="build the extension zips").set_defaults(fn=cmd_dist)
    p = sub.add_parser("test", help="run the whole test suite; other arguments go to pytest")
    p.set_defaults(fn=cmd_test)
    p = sub.add_parser("demo", help="run the main job on the built-in default")
    p.add_argument("--out", default=str(ROOT / "out" / "demo"))
    p.set_defaults(fn=cmd_demo)
    sub.add_parser("jobschema", help="write docs/job.schema.json (the job file's JSON "
                                     "Schema)").set_defaults(fn=cmd_jobschema)
    sub.add_parser("models", help="model folders: lock, schema, env, serve, docker "
                                  "(`build.py models -h`)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = extra
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
