#!/usr/bin/env python3
"""Soak: many runs against one local Cog session, and start/stop cycles of the
local process runtime, watching for growth in open files, threads, child
processes and memory.

    .venv/bin/python bench/bench_soak.py                  # 500 sequential, 100 concurrent, 20 cycles
    .venv/bin/python bench/bench_soak.py -n 100 -c 20 --cycles 3   # what CI runs (tests/core/test_faults_soak.py)

The model is tests/model_servers/process/echo on the local process runtime (its
environment comes from .cache/model-envs, built on first use). Bounds, checked
after a warm-up run so pools and the client's one watchdog thread already exist:
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

BOUNDS = {"fds": 8, "threads": 4, "children": 0, "rss_mb": 64}


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--sequential", type=int, default=500)
    ap.add_argument("-c", "--concurrent", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=20)
    args = ap.parse_args()
    result = soak(args.sequential, args.concurrent, args.cycles)
    for key, value in result.items():
        print(f"{key}: {value}")
    bad = {**over_bounds(result["runs_growth"]), **over_bounds(result["cycles_growth"])}
    print("within bounds" if not bad else f"OVER BOUNDS: {bad} (bounds {BOUNDS})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
