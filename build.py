#!/usr/bin/env python3
"""Build, test and demo Runway for Blender. Standard library only.

    python3 build.py setup     # .venv with real Blender (bpy 5.0) and the test tools
    python3 build.py lock      # re-resolve wheels.lock.json and the environment locks
    python3 build.py dist      # the extension zips, one per platform, in dist/
    python3 build.py test [pytest args]   # the whole suite (sets up what is missing)
    python3 build.py demo      # the main job on the built-in default
    python3 build.py models lock|schema|env|serve|docker ...   # model folders
    python3 build.py jobschema # docs/job.schema.json from the job file's pydantic model
    python3 build.py bench [--quick]   # every benchmark, one table (out/bench/)
    python3 build.py mutate [module ...]   # mutation scores of the fast-tested modules
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

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


# What the tests marked `docker` need from the host: Debian package -> a command it installs.
DOCKER_PACKAGES = {"docker.io": "dockerd", "debootstrap": "debootstrap",
                   "docker-registry": "docker-registry"}
DOCKERD_LOG = Path("/tmp/runway-test-dockerd.log")


def _docker_answers() -> bool:
    import shutil
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _ensure_docker() -> Optional[str]:
    """Install the Debian packages and start dockerd when running as root and they
    are missing; otherwise say exactly what is missing. None when all is ready,
    else the reason the tests cannot run."""
    import shutil
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    missing = [pkg for pkg, cmd in DOCKER_PACKAGES.items() if not shutil.which(cmd)]
    if missing:
        if not (root and shutil.which("apt-get")):
            return (f"missing commands for the Docker tests: "
                    f"{', '.join(DOCKER_PACKAGES[p] for p in missing)}. Install them with "
                    f"`sudo apt-get install --no-install-recommends {' '.join(missing)}` "
                    "(or run this command as root on Debian/Ubuntu, which does it), or skip "
                    "those tests with `python3 build.py test -m 'not docker'`.")
        print(f"installing: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
            if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                return f"`{' '.join(cmd)}` failed; install {' '.join(missing)} by hand."
    if _docker_answers():
        return None
    if not root:
        return ("the Docker engine does not answer (`docker info` fails). Start it "
                "(`sudo systemctl start docker`, or `sudo dockerd &`) and make sure you may "
                "use it (`sudo usermod -aG docker $USER`, then log in again), or skip those "
                "tests with `python3 build.py test -m 'not docker'`.")
    print(f"starting dockerd (log: {DOCKERD_LOG})")
    log = open(DOCKERD_LOG, "ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                     start_new_session=True)
    for _ in range(60):
        if _docker_answers():
            return None
        time.sleep(1)
    tail = DOCKERD_LOG.read_text(errors="replace")[-2000:]
    return f"dockerd did not start within 60 s; its log ends:\n{tail}"


def _skips_docker(pytest_args) -> bool:
    text = " ".join(pytest_args)
    return "not docker" in text


@_timed("test")
def cmd_test(args) -> int:
    if not _skips_docker(args.pytest_args):
        problem = _ensure_docker()
        if problem:
            print(f"build.py test: {problem}", file=sys.stderr)
            return 1
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


@_timed("bench")
def cmd_bench(args) -> int:
    """Every benchmark in bench/ (bench/harness.py inside .venv): one table, with
    out/bench/bench.json, bench.md and PNG plots."""
    python = envs.ensure(envs.DEV)
    envs.ensure(envs.COG)  # the client-overhead benchmark's Cog servers
    dist.build()  # the Blender benchmarks install the freshly built extension
    env = dict(os.environ, RUNWAY_DIST_DIR=str(dist.DIST), RUNWAY_BENCH_DIST_BUILT="1",
               PYTHONDONTWRITEBYTECODE="1")
    cmd = [str(python), str(ROOT / "bench" / "harness.py"), "--out", str(Path(args.out))]
    cmd += ["--quick"] if args.quick else []
    for name in args.only:
        cmd += ["--only", name]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


@_timed("mutate")
def cmd_mutate(argv) -> int:
    """Mutation testing (buildtools/mutation.py, mutmut inside .venv): one table,
    out/mutation/. Not part of `test`: too slow for CI."""
    python = envs.ensure(envs.DEV)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([str(python), "-m", "buildtools.mutation", *argv], cwd=ROOT,
                          env=env).returncode


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["models"]:
        return cmd_models(argv[1:])
    if argv[:1] == ["mutate"]:
        return cmd_mutate(argv[1:])
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
    p = sub.add_parser("bench", help="run every benchmark in bench/: one table, "
                                     "out/bench/bench.json and plots")
    p.add_argument("--quick", action="store_true",
                   help="small sizes, few repetitions (proves the benchmarks work)")
    p.add_argument("--out", default=str(ROOT / "out" / "bench"))
    p.add_argument("--only", action="append", default=[], metavar="BENCH",
                   help="run only this benchmark (e.g. bench_run); repeatable")
    p.set_defaults(fn=cmd_bench)
    sub.add_parser("models", help="model folders: lock, schema, env, serve, docker "
                                  "(`build.py models -h`)")
    sub.add_parser("mutate", help="mutation testing of the fast-tested modules "
                                  "(`build.py mutate -h`)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = extra
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
