"""Every benchmark in bench/, one table: what ``python3 build.py bench [--quick]`` runs
(inside .venv: bpy, numpy, Pillow).

Each benchmark runs in its own process (bpy can be imported once per process, and a
crash or a hang in one leaves the others' figures): ``harness.py --one bench_x``
imports the module, calls its ``collect(bench, quick)`` and writes the figures as
JSON. The parent merges them, lists every figure of figures.CATALOGUE (one a
benchmark did not report is "not measured", with why), prints the table, and
writes ``bench.json``, ``bench.md`` and the plots (PNG) into ``--out``.

    .venv/bin/python bench/harness.py [--quick] [--out out/bench] [--only bench_run ...]
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import figures  # noqa: E402
from figures import CATALOGUE, Collector, Figure, Plot  # noqa: E402

# (module, time limit in s for the full run; --quick gets a third): the order they run in.
BENCHES = [
    ("bench_codecs", 300),
    ("bench_client_overhead", 300),
    ("bench_cold_start_docker", 300),  # the process runtime too, interleaved with Docker
    ("bench_catalog", 300),
    ("bench_run", 900),
    ("bench_batch", 900),
    ("bench_models", 900),
    ("bench_soak", 900),
]
# Run through another benchmark (same figures), never on its own here.
COVERED = {"bench_cold_start": "its figures come from bench_cold_start_docker, which runs "
                               "the process runtime interleaved with Docker"}


# Which benchmark reports the figures of each key prefix.
OWNERS = {"run": "bench_run", "job": "bench_batch", "post": "bench_batch",
          "cold": "bench_cold_start_docker", "catalog": "bench_catalog",
          "codecs": "bench_codecs", "client": "bench_client_overhead", "models": "bench_models",
          "soak": "bench_soak"}


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- adapters

def catalog_collect(bench: Collector, quick: bool) -> None:
    """bench_catalog.py has a command line only: run it and read its table."""
    cards, repeat = (2000, 3) if quick else (10_000, 10)
    proc = subprocess.run([sys.executable, str(HERE / "bench_catalog.py"), "--cards",
                           str(cards), "--repeat", str(repeat)], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_catalog.py exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-300:]}")
    rows = re.findall(r"^(\S.{0,21}?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s*$", proc.stdout, re.M)
    if not rows:
        raise RuntimeError(f"bench_catalog.py printed no query table: {proc.stdout[-300:]}")
    queries = {q.strip(): {"hits": int(h), "search_ms": float(s), "scan_ms": float(b)}
               for q, h, s, b in rows}
    worst = max(queries, key=lambda q: queries[q]["search_ms"])
    load = re.search(r"Catalog.load ([\d.]+) s", proc.stdout)
    bench.add("catalog.search", [queries[worst]["search_ms"]], [queries[worst]["scan_ms"]],
              "plain scan", f"{cards} cards, worst of {len(queries)} queries ({worst!r}), "
              f"median of {repeat}", queries=queries,
              load_s=float(load.group(1)) if load else None)


ADAPTERS = {"bench_catalog": catalog_collect}


def has_collect(path: Path) -> bool:
    return re.search(r"^def collect\(", path.read_text(encoding="utf-8"), re.M) is not None


# ---------------------------------------------------------------- one benchmark (child)

def run_one(name: str, quick: bool, out_json: Path) -> int:
    bench = Collector()
    error = ""
    try:
        if name in ADAPTERS:
            ADAPTERS[name](bench, quick)
        else:
            importlib.import_module(name).collect(bench, quick)
    except BaseException as e:  # noqa: BLE001 (reported as the benchmark's error)
        traceback.print_exc()
        error = f"{type(e).__name__}: {e}".strip()[:300]
    data = bench.to_json()
    data["error"] = error
    out_json.write_text(json.dumps(data), encoding="utf-8")
    # bpy can crash at interpreter exit; the figures are written already.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if not error else 1)


# ---------------------------------------------------------------- all of them (parent)

def _child(name: str, quick: bool, limit: float, log_dir: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out_json = Path(f.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--json",
           str(out_json)] + (["--quick"] if quick else [])
    log = open(log_dir / f"{name}.log", "w", encoding="utf-8")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        proc.wait(timeout=limit)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        timed_out = True
    log.close()
    seconds = time.monotonic() - t0
    try:
        data = json.loads(out_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {"figures": [], "plots": [],
                "error": (f"timed out after {limit:.0f} s" if timed_out else
                          f"exited {proc.returncode} without figures")}
    finally:
        out_json.unlink(missing_ok=True)
    data["seconds"] = seconds
    return data


def run_all(quick: bool, out: Path, only: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / "logs"
    log_dir.mkdir(exist_ok=True)
    names = [n for n, _ in BENCHES]
    left_out = {}
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem
        if name in names or name in ADAPTERS:
            continue
        if name in COVERED:
            left_out[name] = COVERED[name]
        elif has_collect(path):
            BENCHES.append((name, 900))  # a new benchmark with the common entry point
        else:
            left_out[name] = "no collect(bench, quick) entry point: not run"
    t_start = time.monotonic()
    load0 = os.getloadavg()
    collected: list[Figure] = []
    plots: list[Plot] = []
    runs = {}
    for name, limit in BENCHES:
        if only and name not in only:
            continue
        limit = limit / 3 if quick else limit
        print(f"== {name} ...", flush=True)
        data = _child(name, quick, limit, log_dir)
        figs = [Figure.from_json(d) for d in data.get("figures", [])]
        collected += figs
        plots += [Plot(**p) for p in data.get("plots", [])]
        runs[name] = {"seconds": round(data["seconds"], 1), "error": data.get("error", ""),
                      "figures": [f.key for f in figs]}
        state = f"error: {data['error']}" if data.get("error") else "ok"
        print(f"   {name}: {len(figs)} figures in {data['seconds']:.0f} s ({state}; "
              f"log {_rel(log_dir / (name + '.log'))})", flush=True)
    by_key = {f.key: f for f in collected}
    ordered: list[Figure] = []
    for key in CATALOGUE:
        if key in by_key:
            ordered.append(by_key.pop(key))
        else:
            owner = OWNERS.get(key.split(".")[0], "")
            if owner not in runs:
                reason = f"{owner or 'its benchmark'} not run"
            elif runs[owner]["error"]:
                reason = f"{owner} failed: {runs[owner]['error'][:160]}"
            else:
                reason = f"{owner} did not report it"
            ordered.append(Figure(key, reason=reason))
    ordered += list(by_key.values())  # figures outside the catalogue, last
    seconds = time.monotonic() - t_start
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "quick": quick, "seconds": round(seconds, 1), "machine": machine(),
            "load_before": [round(x, 2) for x in load0],
            "load_after": [round(x, 2) for x in os.getloadavg()], "commit": commit(),
            "benchmarks": runs, "left_out": left_out}
    text = figures.table(ordered)
    print()
    print(f"Runway for Blender benchmarks{' (--quick: small sizes, few repetitions; not for judging speed)' if quick else ''}")
    print(f"{meta['machine']}; load {load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"{seconds:.0f} s")
    print(text)
    for name, why in left_out.items():
        print(f"left out: {name}: {why}")
    figures.write_json(out / "bench.json", ordered, plots, meta)
    (out / "bench.md").write_text(figures.table(ordered, markdown=True) + "\n", encoding="utf-8")
    written = []
    for p in plots:
        path = out / f"{p.name}.png"
        figures.draw(p, path)
        written.append(path)
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}" +
          "".join(f", {p.name}" for p in written))
    failed = [n for n, r in runs.items() if r["error"]]
    return 1 if failed else 0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="ascii", errors="replace"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
        mem_text = f", {mem:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        mem_text = ""
    return f"{cpu}, {os.cpu_count()} CPUs{mem_text}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, few repetitions: proves the benchmarks work")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    ap.add_argument("--only", action="append", default=[], help="run only these benchmarks")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return run_one(args.one, args.quick, args.json)
    return run_all(args.quick, args.out.resolve(), args.only)


if __name__ == "__main__":
    sys.exit(main())
