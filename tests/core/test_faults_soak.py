"""The short soak in CI: 100 sequential and 20 concurrent runs against one local
Cog session (the process runtime, real Cog server), then 3 start/stop cycles,
with no growth in open files, threads, child processes or memory beyond
bench/bench_soak.py's BOUNDS. The long soak (500 / 100 / 20 cycles) is
`bench/bench_soak.py`.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.network, pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "bench" / "bench_soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_soak_has_no_resource_growth(tmp_path):
    bench = _bench()
    result = bench.soak(100, 20, 3, runtime_dir=tmp_path / "runtime")
    print(result)
    assert not bench.over_bounds(result["runs_growth"]), (result, bench.BOUNDS)
    assert not bench.over_bounds(result["cycles_growth"]), (result, bench.BOUNDS)
