"""Cold start of a model: Run -> READY, and Stop, per runtime.

Each repetition times, interleaved so drift hits all alike:

- bare:    the Cog server command run directly (``python -m cog.server.http``
           with the same cwd, PATH and env), polled on /health-check until
           READY, then ended with SIGTERM to its group (the baseline);
- process: ``ProcessSession.start()`` -> RUNNING and ``stop()``: everything the
           local process runtime adds (environment stamp check, port pick, pid
           file, log file, readiness proof, monitor thread, /shutdown first).

"Cold start" is the time to READY minus the model's own setup (Cog's
``setup.started_at``/``completed_at``), so a model with a long setup does not
hide the runtime's cost. The model's environment is built once beforehand
(``--fresh-env`` also times building it in a temporary folder).

Add a runtime (Docker, ...) by writing a ``bench_<name>(model_dir, args) ->
Sample`` function and listing it in RUNTIMES.

    .venv/bin/python bench/bench_cold_start.py [-n 5] [--model tests/model_servers/process/echo]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runway_addon.core.runtimes import process  # noqa: E402
from runway_addon.core.runtimes.process import (  # noqa: E402
    ModelEnvironment, ProcessSession, read_cog_yaml, server_command, server_env)

POLL = ProcessSession.poll_interval  # the same health polling for every runtime


@dataclass
class Sample:
    ready_s: float  # Run -> READY (wall clock)
    setup_s: float  # the model's own setup, as Cog reports it
    stop_s: float  # Stop -> nothing left

    @property
    def cold_s(self) -> float:
        return self.ready_s - self.setup_s


def _setup_seconds(url: str) -> float:
    health = requests.get(f"{url}/health-check", timeout=5).json()
    return process._setup_seconds(health) or 0.0


def wait_ready(url: str, proc: Optional[subprocess.Popen] = None) -> None:
    """Poll ``url``'s /health-check every POLL s until it answers READY (the bare
    baselines, here and in bench_cold_start_docker.py); ``proc`` exiting first ends
    the benchmark."""
    while True:
        try:
            if requests.get(f"{url}/health-check", timeout=1).json()["status"] == "READY":
                return
        except (requests.RequestException, ValueError):
            pass
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"bare server exited with {proc.returncode}")
        time.sleep(POLL)


def bench_bare(model_dir: Path, args) -> Sample:
    """The server command by hand: what any runtime has to pay at least."""
    env_dir = ModelEnvironment(model_dir, args.env_root).path
    _, predictor = read_cog_yaml(model_dir)
    port = process.free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(server_command(env_dir / "bin" / "python"), cwd=model_dir,
                            env=server_env(env_dir, predictor, port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_ready(url, proc)
        ready = time.perf_counter() - t0
        setup = _setup_seconds(url)
    finally:
        t1 = time.perf_counter()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        process._wait_until(lambda: not process._group_alive(proc.pid), 10)
        stop = time.perf_counter() - t1
    return Sample(ready, setup, stop)


def bench_process(model_dir: Path, args) -> Sample:
    session = ProcessSession(model_dir, env_root=args.env_root, runtime_dir=args.runtime_dir)
    t0 = time.perf_counter()
    session.start(timeout=300)
    ready = time.perf_counter() - t0
    setup = session.setup_seconds or 0.0
    t1 = time.perf_counter()
    session.stop()
    return Sample(ready, setup, time.perf_counter() - t1)


# The bare start each runtime is compared with.
BASELINES: dict[str, str] = {"process": "bare"}

RUNTIMES: dict[str, Callable[[Path, argparse.Namespace], Sample]] = {
    "bare": bench_bare,  # first: the baseline the others are read against
    "process": bench_process,
}


DEFAULT_MODEL = ROOT / "tests" / "model_servers" / "process" / "echo"
DEFAULT_ENV_ROOT = ROOT / ".cache" / "model-envs"


def measure(names: list[str], n: int, model: Path = DEFAULT_MODEL,
            env_root: Path = DEFAULT_ENV_ROOT) -> dict[str, list[Sample]]:
    """``n`` interleaved repetitions of each runtime in ``names`` (the environment is
    built first, untimed)."""
    model = Path(model).resolve()
    args = argparse.Namespace(env_root=Path(env_root))
    with tempfile.TemporaryDirectory() as tmp:
        args.runtime_dir = Path(tmp) / "runtime"
        ModelEnvironment(model, args.env_root).ensure()  # not part of a cold start
        samples: dict[str, list[Sample]] = {name: [] for name in names}
        for _ in range(n):
            for name in names:
                samples[name].append(RUNTIMES[name](model, args))
    return samples


def add_figures(bench, samples: dict, note: str) -> None:
    """cold.<runtime> figures: each runtime's cold start against its own bare start."""
    for name, base in BASELINES.items():
        if name in samples and base in samples:
            bench.add(f"cold.{name}", [x.cold_s * 1000 for x in samples[name]],
                      [x.cold_s * 1000 for x in samples[base]], base, note,
                      ready_ms=[x.ready_s * 1000 for x in samples[name]],
                      stop_ms=[x.stop_s * 1000 for x in samples[name]],
                      baseline_stop_ms=[x.stop_s * 1000 for x in samples[base]])


def collect(bench, quick: bool = False) -> None:
    """The process runtime's cold start for ``build.py bench`` (bench/figures.py);
    bench_cold_start_docker.collect adds the Docker runtime to the same run."""
    n = 2 if quick else 5
    add_figures(bench, measure(["bare", "process"], n), f"echo model, n={n}")


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.0f} ms (min {min(values) * 1000:5.0f})"


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="repetitions")
    ap.add_argument("--model", type=Path, default=ROOT / "tests" / "model_servers" / "process" / "echo")
    ap.add_argument("--env-root", type=Path, default=ROOT / ".cache" / "model-envs")
    ap.add_argument("--runtime", action="append", choices=sorted(RUNTIMES),
                    help="runtimes to time (default: all)")
    ap.add_argument("--fresh-env", action="store_true",
                    help="also time building the environment in a temporary folder")
    args = ap.parse_args(argv)
    model = args.model.resolve()
    names = args.runtime or list(RUNTIMES)

    with tempfile.TemporaryDirectory() as tmp:
        args.runtime_dir = Path(tmp) / "runtime"
        if args.fresh_env:
            t = time.perf_counter()
            ModelEnvironment(model, Path(tmp) / "envs").ensure()
            print(f"environment build (fresh): {time.perf_counter() - t:.1f} s")
        ModelEnvironment(model, args.env_root).ensure()  # not part of a cold start
        samples: dict[str, list[Sample]] = {n: [] for n in names}
        for _ in range(args.n):
            for n in names:
                samples[n].append(RUNTIMES[n](model, args))

    print(f"model: {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model}, "
          f"{args.n} runs, medians; cold start = Run -> READY minus the model's setup")
    print(f"{'runtime':10} {'cold start':>26} {'Run -> READY':>26} {'setup':>10} {'stop':>26}")
    for n in names:
        s = samples[n]
        print(f"{n:10} {_ms([x.cold_s for x in s])} {_ms([x.ready_s for x in s])} "
              f"{statistics.median(x.setup_s for x in s) * 1000:7.0f} ms "
              f"{_ms([x.stop_s for x in s])}")
    # Each runtime against its own bare start, measured in the same run:
    # the process runtime against the bare server command, Docker against a bare
    # container start ("docker-bare").
    for n in names:
        base = BASELINES.get(n)
        if base in samples:
            extra = (statistics.median(x.cold_s for x in samples[n])
                     - statistics.median(x.cold_s for x in samples[base]))
            print(f"{n}: {extra * 1000:+.0f} ms cold start over {base}")


if __name__ == "__main__":
    main()
