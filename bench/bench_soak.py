#!/usr/bin/env python3
"""Soak: many runs against one local Cog session, and start/stop cycles of each
local runtime (the process runtime and Docker on the CPU), watching for growth in
open files, threads, child processes and memory.

    .venv/bin/python bench/bench_soak.py                  # 500 sequential, 100 concurrent, 20 + 20 cycles
    .venv/bin/python bench/bench_soak.py -n 100 -c 20 --cycles 3   # what CI runs (tests/core/test_faults_soak.py)
    python3 build.py bench --only bench_soak              # the same, into the one table (collect)

The runs and the process cycles use tests/model_servers/process/echo on the local
process runtime (its environment comes from .cache/model-envs, built on first use);
the Docker cycles use the test image runway-test/invert (tests/model_servers/docker,
built by buildtools/images.py, reused while its content hash matches). Bounds,
checked after a warm-up so pools and the client's one watchdog thread already exist
(for Docker: 4 cycles, until docker-py's connection pool to the engine has filled):
open files +8, threads +4, child processes +0 after the last stop, RSS +64 MB.
Linux only (/proc).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ECHO = ROOT / "tests" / "model_servers" / "process" / "echo"
SHARED_ENVS = ROOT / ".cache" / "model-envs"
INVERT = ROOT / "tests" / "model_servers" / "docker" / "invert"
INVERT_TAG = "runway-test/invert:latest"  # the Docker tests' image name: one build for both
DOCKER_WARMUP = 4  # cycles until docker-py's pool to the engine has filled (about 28 fds)

BOUNDS = {"fds": 8, "threads": 4, "children": 0, "rss_mb": 64}
UNITS = {"fds": "open files", "threads": "threads", "children": "processes", "rss_mb": "MB"}


def resources() -> dict:
    """Open files, threads, live child processes and resident memory of this process."""
    me = os.getpid()
    children = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            children += 1
    rss_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
            "children": children, "rss_mb": rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20}


def growth(before: dict, after: dict) -> dict:
    return {k: round(after[k] - before[k], 1) for k in before}


def over_bounds(g: dict, bounds: dict = BOUNDS) -> dict:
    return {k: v for k, v in g.items() if v > bounds[k]}


def run_load(client, sequential: int, concurrent: int, workers: int = 8) -> dict:
    """``sequential`` runs one after another, then ``concurrent`` runs from
    ``workers`` threads sharing the client; every answer is checked."""
    t0 = time.monotonic()
    for i in range(sequential):
        out = client.run({"text": f"s{i}"}).outputs["output"]
        assert out == f"s{i}", out
    t_seq = time.monotonic() - t0

    def one(i):
        out = client.run({"text": f"c{i}"}).outputs["output"]
        assert out == f"c{i}", out

    t1 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(concurrent)))
    return {"sequential_s": round(t_seq, 2), "concurrent_s": round(time.monotonic() - t1, 2)}


def session(env_root=SHARED_ENVS, runtime_dir=None):
    from runway_addon.core.runtimes.process import ModelEnvironment, ProcessSession
    ModelEnvironment(ECHO, env_root).ensure()
    kw = {"env_root": env_root}
    if runtime_dir is not None:
        kw["runtime_dir"] = runtime_dir
    return ProcessSession(ECHO, **kw)


def soak(sequential: int, concurrent: int, cycles: int, runtime_dir=None) -> dict:
    """The whole soak; returns measurements and the growth of each resource."""
    s = session(runtime_dir=runtime_dir)
    s.start(timeout=120)
    try:
        client = s.client(timeout=60)
        client.run({"text": "warm-up"})
        base = resources()
        timing = run_load(client, sequential, concurrent)
        after_runs = resources()
        client.close()
    finally:
        s.stop()
    for _ in range(cycles):
        c = session(runtime_dir=runtime_dir)
        c.start(timeout=120)
        cl = c.client(timeout=30)
        cl.run({"text": "cycle"})
        cl.close()
        c.stop()
    time.sleep(0.2)
    after_cycles = resources()
    return {**timing, "base": base, "runs_growth": growth(base, after_runs),
            "cycles_growth": growth(base, after_cycles)}


def docker_soak(cycles: int, warmup: int = DOCKER_WARMUP) -> dict:
    """Start/run/stop cycles of the Docker runtime (CPU); the growth after ``warmup``
    cycles, and the containers of this soak still there afterwards (none expected)."""
    import numpy as np

    from buildtools import images
    from runway_addon.core.runtimes import docker as rt

    images.build_model_image(INVERT, INVERT_TAG)
    owner = f"bench-soak-{os.getpid()}"
    pixels = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)

    def cycle():
        s = rt.DockerSession("invert", INVERT_TAG, owner=owner)
        s.start(timeout=120)
        try:
            with s.client(timeout=60) as client:
                out = client.run({"image": pixels}).outputs
                assert out, "the Docker model answered nothing"
        finally:
            s.stop()

    for _ in range(warmup):
        cycle()
    base = resources()
    t0 = time.monotonic()
    for _ in range(cycles):
        cycle()
    seconds = time.monotonic() - t0
    after = resources()
    engine = rt.connect_engine(None)
    try:
        left = len(engine.containers.list(all=True,
                                          filters={"label": f"{rt.OWNER_LABEL}={owner}"}))
    finally:
        engine.close()
    return {"docker_cycles_s": round(seconds, 1), "docker_base": base,
            "docker_growth": growth(base, after), "docker_containers_left": left}


PHASES = {"runs_growth": "runs on one session", "cycles_growth": "process runtime cycles",
          "docker_growth": "Docker runtime cycles"}


def add_figures(bench, result: dict, note: dict) -> None:
    """One figure per phase and resource, its goal the bound (bench/figures.py)."""
    for phase, title in PHASES.items():
        key = phase.split("_")[0]
        for resource, bound in BOUNDS.items():
            fig = f"soak.{key}.{resource}"
            if phase not in result:
                bench.skip(fig, note.get(phase, "not run"))
                continue
            bench.add(fig, [result[phase][resource]], note=note[phase],
                      grown=result[phase], base=result.get(
                          "docker_base" if key == "docker" else "base"))


def collect(bench, quick: bool = False) -> None:
    """The soak for ``build.py bench``: CI's sizes with --quick (100 sequential and 20
    concurrent runs, 3 cycles of each runtime), else the long one (500, 100, 20)."""
    n, c, cycles = (100, 20, 3) if quick else (500, 100, 20)
    result = soak(n, c, cycles)
    note = {"runs_growth": f"{n} sequential + {c} concurrent runs "
                           f"({result['sequential_s']} s + {result['concurrent_s']} s)",
            "cycles_growth": f"{cycles} start/run/stop cycles after the runs"}
    try:
        result.update(docker_soak(cycles))
        note["docker_growth"] = (f"{cycles} start/run/stop cycles after {DOCKER_WARMUP} "
                                 f"warm-up ({result['docker_cycles_s']} s), "
                                 f"{result['docker_containers_left']} containers left")
    except Exception as e:  # noqa: BLE001 (any reason Docker cannot run here)
        note["docker_growth"] = f"Docker not usable here: {type(e).__name__}: {e}"[:200]
    add_figures(bench, result, note)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--sequential", type=int, default=500)
    ap.add_argument("-c", "--concurrent", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--no-docker", action="store_true", help="skip the Docker runtime's cycles")
    args = ap.parse_args()
    result = soak(args.sequential, args.concurrent, args.cycles)
    if not args.no_docker:
        result.update(docker_soak(args.cycles))
    for key, value in result.items():
        print(f"{key}: {value}")
    bad = {f"{phase}.{k}": v for phase in PHASES if phase in result
           for k, v in over_bounds(result[phase]).items()}
    if result.get("docker_containers_left"):
        bad["docker_containers_left"] = result["docker_containers_left"]
    print("within bounds" if not bad else f"OVER BOUNDS: {bad} (bounds {BOUNDS})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
