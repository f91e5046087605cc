"""Cold start in Docker: the Docker runtimes of bench_cold_start.py.

Adds two runtimes to bench_cold_start's table (same model, same repetitions,
interleaved with the others so drift hits all alike):

- docker-bare: the model's image started through the Docker SDK with nothing
               but a published port (what ``docker run -d -p 127.0.0.1::5000``
               does), polled on /health-check until READY, then removed with
               force (the Docker baseline);
- docker:      ``DockerSession.start()`` -> RUNNING and ``stop()``: everything the
               Docker runtime adds (engine ping, image check, hardening, labels,
               shared folder mount, event watcher, logs kept at stop).

The image is built offline from the model folder by buildtools.images before
any timing (reused when up to date; its build time is printed).

    .venv/bin/python bench/bench_cold_start_docker.py [-n 5] [--model DIR]
        [--runtime docker --runtime docker-bare ...]   # default: every runtime
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import bench_cold_start as cold  # noqa: E402
from bench_cold_start import Sample  # noqa: E402

from buildtools import images  # noqa: E402
from runway_addon.core.runtimes.docker import (CONTAINER_PORT, DockerSession,  # noqa: E402
                                               connect_engine)

_client = None


def _engine():
    global _client
    if _client is None:
        _client = connect_engine()
    return _client


def _tag(model_dir: Path) -> str:
    return f"runway-bench/{model_dir.name.lower()}:latest"


def bench_docker_bare(model_dir: Path, args) -> Sample:
    client = _engine()
    t0 = time.perf_counter()
    container = client.containers.run(_tag(model_dir), detach=True,
                                      ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"][f"{CONTAINER_PORT}/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        cold.wait_ready(url)
        ready = time.perf_counter() - t0
        setup = cold._setup_seconds(url)
    finally:
        t1 = time.perf_counter()
        container.remove(force=True)
        stop = time.perf_counter() - t1
    return Sample(ready, setup, stop)


def bench_docker(model_dir: Path, args) -> Sample:
    session = DockerSession(model_dir.name, _tag(model_dir), client=_engine())
    t0 = time.perf_counter()
    session.start(timeout=300)
    ready = time.perf_counter() - t0
    setup = cold._setup_seconds(session.url)
    t1 = time.perf_counter()
    session.stop()
    return Sample(ready, setup, time.perf_counter() - t1)


cold.RUNTIMES["docker-bare"] = bench_docker_bare
cold.RUNTIMES["docker"] = bench_docker
cold.BASELINES["docker"] = "docker-bare"


def collect(bench, quick: bool = False) -> None:
    """Cold start of the process and Docker runtimes, interleaved in one run, for
    ``build.py bench`` (bench/figures.py). Without a Docker engine (or when the image
    cannot be built here) the Docker figure is reported as not measured, with why."""
    n = 2 if quick else 5
    model = cold.DEFAULT_MODEL.resolve()
    names = ["bare", "process"]
    try:
        _engine().ping()
        info = images.build_model_image(model, _tag(model))
        names += ["docker-bare", "docker"]
    except Exception as e:  # noqa: BLE001 (any reason Docker cannot run here)
        bench.skip("cold.docker", f"Docker not usable here: {type(e).__name__}: {e}"[:200])
        info = None
    note = f"echo model, n={n}"
    if info:
        note += f"; image {'reused' if info['reused'] else 'built'}"
    cold.add_figures(bench, cold.measure(names, n, model), note)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--model", type=Path, default=ROOT / "tests" / "model_servers" / "process" / "echo")
    known, _ = ap.parse_known_args(argv)
    info = images.build_model_image(known.model.resolve(), _tag(known.model.resolve()))
    state = "reused" if info["reused"] else f"built in {info['seconds']:.0f} s"
    print(f"image {info['tag']}: {state}, {info['size'] / 1e6:.0f} MB")
    cold.main(argv)


if __name__ == "__main__":
    main()
