"""Workspaces on disk: every change, two processes writing at once, a broken file."""
import json
import subprocess
import sys
import textwrap

import pytest

from runway_addon.core.workspaces import WorkspaceError, WorkspaceStore
from tests.helpers import python_env


def test_create_rename_delete_and_order_models(tmp_path):
    store = WorkspaceStore(tmp_path)
    assert store.load() == []
    a = store.create("Lookdev", ["upscale"])
    b = store.create("Lookdev")  # a taken name gets a number
    assert [w.name for w in store.load()] == ["Lookdev", "Lookdev 2"]
    store.rename(b.id, "  Comp   shots ")
    assert store.get(b.id).name == "Comp shots"
    assert store.add_model(a.id, "denoise") and store.add_model(a.id, "pose")
    assert not store.add_model(a.id, "pose")  # once only
    assert store.get(a.id).models == ["upscale", "denoise", "pose"]
    assert store.move_model(a.id, "pose", -2) == 0
    assert store.move_model(a.id, "upscale", +5) == 2
    assert store.get(a.id).models == ["pose", "denoise", "upscale"]
    assert store.remove_model(a.id, "denoise") and not store.remove_model(a.id, "denoise")
    store.delete(b.id)
    assert [w.id for w in WorkspaceStore(tmp_path).load()] == [a.id]  # a new reader sees it
    with pytest.raises(WorkspaceError, match="no longer exists"):
        store.add_model(b.id, "pose")
    with pytest.raises(WorkspaceError, match="needs a name"):
        store.create("   ")
    data = json.loads((tmp_path / "workspaces.json").read_text())
    assert data == {"format": 1, "workspaces": [
        {"id": a.id, "name": "Lookdev", "models": ["pose", "upscale"]}]}


WRITER = textwrap.dedent("""
    import sys
    from runway_addon.core.workspaces import WorkspaceStore
    store = WorkspaceStore({folder!r})
    ws = next(w for w in store.load() if w.name == "shared")
    tag = sys.argv[1]
    for i in range(60):
        store.add_model(ws.id, f"{{tag}}-{{i}}")
        if i % 10 == 0:
            store.create(f"{{tag}} {{i}}")
""")


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    store = WorkspaceStore(tmp_path)
    shared = store.create("shared")
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(folder=str(tmp_path)))
    procs = [subprocess.Popen([sys.executable, str(script), tag], env=python_env())
             for tag in ("a", "b")]
    # This process reads while they write: always a whole file, never a broken one.
    reads = 0
    while any(p.poll() is None for p in procs):
        store.load()
        reads += 1
    assert [p.wait() for p in procs] == [0, 0]
    assert not store.problem, store.problem
    models = store.get(shared.id).models
    assert sorted(models) == sorted(f"{t}-{i}" for t in "ab" for i in range(60))
    names = {w.name for w in store.load()}
    assert {f"{t} {i}" for t in "ab" for i in range(0, 60, 10)} <= names
    assert not list(tmp_path.glob("*.broken-*")) and not list(tmp_path.glob(".workspaces-*"))


def test_a_broken_file_is_kept_aside_and_reported(tmp_path):
    path = tmp_path / "workspaces.json"
    path.write_text('{"format": 1, "workspaces": [{"id": "x", "name": "Mine", "models": [')
    store = WorkspaceStore(tmp_path)
    assert store.load() == []
    assert "could not be read" in store.problem and "kept as" in store.problem
    aside = list(tmp_path.glob("workspaces.json.broken-*"))
    assert len(aside) == 1 and aside[0].read_text().startswith('{"format": 1')
    # Work goes on in a new file; the broken one stays untouched.
    store.create("Fresh")
    assert [w.name for w in WorkspaceStore(tmp_path).load()] == ["Fresh"]
    assert aside[0].exists()


def test_a_file_of_the_wrong_shape_is_also_kept(tmp_path):
    (tmp_path / "workspaces.json").write_text('{"workspaces": [{"id": 3}]}')
    store = WorkspaceStore(tmp_path)
    assert store.load() == [] and "workspaces[0]" in store.problem
    assert len(list(tmp_path.glob("workspaces.json.broken-*"))) == 1
