"""What CogClient costs over a bare ``requests`` POST to the same Cog server.

Starts real Cog servers (tests/model_servers/cog, cog 0.23.1 from .venv-cog) one at a
time and times, interleaved in each repetition so drift hits all alike:

- bare:  ``session.post(/predictions, json={"input": wire})`` + ``r.json()``,
         with the wire payload encoded once beforehand (the baseline);
- raw:   ``CogClient.predict_raw(wire)``: the client's protocol path alone
         (PUT with an id, 409 retry, error mapping), same payload;
- run:   ``CogClient.run(values)``: Python values in and out, so validation,
         PNG/base64 encoding of the input and decoding of the output count too.

Payloads: a small text input (list_out model) and a 1920x1080 RGB image (image
model, which inverts it), the image once as a data URI and once as a bare path
in a shared folder. Medians in milliseconds.

    .venv/bin/python bench/bench_client_overhead.py [-n 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runway_addon.core.codecs import encode_value  # noqa: E402
from runway_addon.core.protocols.cog import CogClient, cog_wire  # noqa: E402
from buildtools import envs  # noqa: E402
from tests.servers import COG_MODELS as MODELS, CogServer  # noqa: E402


def bare_post(session: requests.Session, url: str, wire: dict, busy: list) -> dict:
    while True:  # the same 409 policy as the client, so both pay for it alike
        r = session.post(url + "/predictions", json={"input": wire})
        if r.status_code != 409:
            body = r.json()
            assert body.get("status") == "succeeded", body
            return body
        busy.append(1)
        time.sleep(0.02)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def bench_case(url: str, values: dict, n: int, shared_dir=None, warmup: int = 2) -> dict:
    client = CogClient(url, shared_dir=shared_dir)
    cmd = client.spec().command()
    ctx = cog_wire(shared_dir=shared_dir)
    wire = {f.name: encode_value(f, values[f.name], ctx) for f in cmd.inputs if f.name in values}
    session = requests.Session()
    busy: list = []
    times = {"bare": [], "raw": [], "run": []}
    for i in range(n + warmup):  # warm-up rounds, not counted
        row = {"bare": timed(lambda: bare_post(session, url, wire, busy)),
               "raw": timed(lambda: client.predict_raw(wire)),
               "run": timed(lambda: client.run(values))}
        if i >= warmup:
            for k, v in row.items():
                times[k].append(v)
    client.close()
    session.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    med["busy_409"] = len(busy)
    med["samples"] = times
    return med


CASES = (("list_out", "small text input", {"prompt": "a b c"}, False),
         ("image", "1920x1080 image, data URI", "frame", False),
         ("image", "1920x1080 image, shared path", "frame", True))


def run_cases(n: int, cases=CASES, warmup: int = 2) -> list:
    """(label, medians and samples) per case, one real Cog server at a time."""
    venv = envs.ensure(envs.COG).parent.parent
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    rows = []
    for model, label, values, shared in cases:
        values = {"image": frame} if values == "frame" else values
        server = CogServer(venv, MODELS / model)
        try:
            server.wait_settled()
            with tempfile.TemporaryDirectory(prefix="cog-bench-") as shared_dir:
                rows.append((label, bench_case(server.url, values, n,
                                               shared_dir if shared else None)))
        finally:
            server.stop()
    return rows


def collect(bench, quick: bool = False) -> None:
    """Client figures for ``build.py bench`` (bench/figures.py), each against a bare
    ``requests`` POST of the same payload to the same server in the same run."""
    n = 3 if quick else 20
    (_, text), (_, uri), (_, path) = run_cases(n, warmup=1 if quick else 2)
    note = f"n={n}"
    bench.add("client.text", text["samples"]["raw"], text["samples"]["bare"], "bare POST", note)
    bench.add("client.image_uri", uri["samples"]["raw"], uri["samples"]["bare"], "bare POST",
              note)
    bench.add("client.image_run", path["samples"]["run"], path["samples"]["bare"],
              "bare POST", note)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20, help="repetitions per case")
    args = ap.parse_args()
    rows = run_cases(args.n)
    print(f"median of {args.n} runs, ms (bare = requests POST baseline, same server, "
          "same payload)")
    print(f"{'case':32} {'bare':>8} {'raw':>8} {'run':>8} {'raw-bare':>9} {'run-bare':>9}"
          f" {'409s':>5}")
    for label, m in rows:
        print(f"{label:32} {m['bare']:8.1f} {m['raw']:8.1f} {m['run']:8.1f} "
              f"{m['raw'] - m['bare']:9.1f} {m['run'] - m['bare']:9.1f} {m['busy_409']:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
