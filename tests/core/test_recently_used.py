"""Recently used models: recorded when a model runs, kept beside the workspaces,
written atomically under the same kind of lock, a broken file kept aside."""
import json
import subprocess
import sys
import textwrap

from runway_addon.core.workspaces import RECENT_KEPT, RecentStore
from tests.helpers import python_env


def test_recorded_newest_first_and_kept_short(tmp_path):
    store = RecentStore(tmp_path)
    assert store.load() == {} and store.latest() == []
    store.record("upscale", when=100)
    store.record("pose", when=200)
    store.record("upscale", when=300)  # used again: newest
    assert store.latest() == ["upscale", "pose"]
    assert RecentStore(tmp_path).load() == {"upscale": 300.0, "pose": 200.0}  # on disk
    for i in range(RECENT_KEPT + 5):
        store.record(f"m{i}", when=1000 + i)
    used = store.load()
    assert len(used) == RECENT_KEPT and "m0" not in used and f"m{RECENT_KEPT + 4}" in used
    assert not list(tmp_path.glob(".recent-*.tmp"))  # no temporary file left


WRITER = textwrap.dedent("""
    import sys
    from runway_addon.core.workspaces import RecentStore
    store = RecentStore({folder!r})
    for i in range(20):  # 40 in all: fewer than RECENT_KEPT
        store.record(f"{{sys.argv[1]}}-{{i}}", when=float(i))
""")


def test_two_processes_recording_at_once_lose_nothing(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(folder=str(tmp_path)))
    procs = [subprocess.Popen([sys.executable, str(script), tag], env=python_env())
             for tag in ("a", "b")]
    while any(p.poll() is None for p in procs):
        RecentStore(tmp_path).load()  # always a whole file
    assert [p.returncode for p in procs] == [0, 0]
    used = RecentStore(tmp_path).load()
    assert {f"{t}-{i}" for t in "ab" for i in range(20)} - set(used) == set()


def test_a_broken_file_is_kept_aside_and_reported(tmp_path):
    (tmp_path / "recent.json").write_text('{"models": {"upscale": "yesterday"}}')
    store = RecentStore(tmp_path)
    assert store.load() == {}
    assert "could not be read" in store.problem and "kept as" in store.problem
    aside = list(tmp_path.glob("recent.json.broken-*"))
    assert len(aside) == 1 and "yesterday" in aside[0].read_text()
    store.record("pose", when=5)
    assert json.loads((tmp_path / "recent.json").read_text())["models"] == {"pose": 5}
