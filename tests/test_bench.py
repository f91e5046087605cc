"""`build.py bench --quick` as CI runs it: every benchmark still runs and reports every
figure into one table, the JSON and the plots. Nothing here judges speed: the figures
of a shared machine are not asserted, only that they are there."""
import json
import subprocess
import sys

import pytest

from bench import figures
from tests.helpers import ROOT

pytestmark = [pytest.mark.blender, pytest.mark.network, pytest.mark.slow]


def test_quick_bench_prints_one_table_and_writes_json_and_plots(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(ROOT / "build.py"), "bench", "--quick",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    printed = proc.stdout
    # One table, with its columns and a row per figure of the catalogue.
    assert printed.count("value: median [min-max]") == 1
    for column in ("baseline (same run)", "ratio", "goal", "holds"):
        assert column in printed
    for title, *_ in figures.CATALOGUE.values():
        assert title in printed, title

    data = json.loads((out / "bench.json").read_text())
    by_key = {f["key"]: f for f in data["figures"]}
    assert set(figures.CATALOGUE) <= set(by_key)
    assert data["meta"]["quick"] is True and data["meta"]["machine"]
    assert not any(r["error"] for r in data["meta"]["benchmarks"].values()), \
        data["meta"]["benchmarks"]
    for key, f in by_key.items():
        # Measured: a median with its spread; otherwise the reason is given.
        if f["measured"]:
            assert f["min"] <= f["value"] <= f["max"], key
            if f["baseline"]:
                assert f["baseline_value"] is not None and f["ratio"] is not None, key
            if f["goal_kind"]:
                assert f["held"] in (True, False), key
        else:
            assert f["reason"], key
    # These are measured wherever the suite runs (real Blender, Cog, local processes);
    # Docker figures and the shelf may be reported as not measured, with why.
    for key in ("run.overhead.1080p", "run.peer.1080p", "run.overhead.4k", "run.peer.4k",
                "run.apply.byte.1080p", "run.apply.float.1080p", "run.max_step",
                "run.warm_starts", "run.memory.4k", "job.replicas1", "job.replicas2",
                "post.render", "cold.process", "catalog.search", "codecs.srgb.1080p",
                "client.text", "client.image_uri", "client.image_run",
                *(f"soak.{phase}.{res}" for phase in ("runs", "cycles")
                  for res in ("fds", "threads", "children", "rss_mb"))):
        assert by_key[key]["measured"], (key, by_key[key]["reason"])
    assert (out / "bench.md").read_text().startswith("| figure |")
    for plot in ("overhead_per_frame", "throughput_replicas", "main_thread_timeline"):
        png = out / f"{plot}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
