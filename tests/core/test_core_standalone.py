"""core is usable in plain Python: every module imports with bpy made unimportable."""
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, python_env

SCRIPT = r"""
import importlib, pkgutil, sys
class NoBpy:
    def find_spec(self, name, path=None, target=None):
        if name == "bpy" or name.startswith(("bpy.", "bpy_", "mathutils", "bmesh")):
            raise ImportError("bpy is not available in this interpreter")
sys.meta_path.insert(0, NoBpy())
import runway_addon.core as core
names = []
for info in pkgutil.walk_packages(core.__path__, "runway_addon.core."):
    importlib.import_module(info.name)
    names.append(info.name)
assert not any(m == "bpy" or m.startswith("bpy.") for m in sys.modules), "bpy got imported"
print(len(names), " ".join(sorted(names)))
"""


def test_every_core_module_imports_without_bpy():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, env=python_env())
    assert proc.returncode == 0, proc.stderr
    count, names = proc.stdout.split(" ", 1)
    assert int(count) >= 4
    assert "runway_addon.core.spec" in names and "runway_addon.core.tokens" in names


def test_core_never_mentions_bpy_imports():
    for path in (ROOT / "runway_addon" / "core").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import bpy", "from bpy")), f"{path}: {line}"


# Words about Blender's own controls: the Blender layer adds them (blender/reports.py).
BLENDER_CONTROL_WORDS = ("Preferences >", "Set Token", "Blender's preferences", "Run panel",
                         "N panel", "sidebar", "add-on preferences", "Add-ons >")


def _message_strings(path: Path):
    """String constants of a module that are not docstrings (messages, hints)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            yield node.lineno, node.value


def test_core_messages_name_no_blender_controls():
    found = [f"{p.relative_to(ROOT)}:{line}: {text[:80]!r}"
             for p in sorted((ROOT / "runway_addon" / "core").rglob("*.py"))
             for line, text in _message_strings(p)
             if any(w.lower() in text.lower() for w in BLENDER_CONTROL_WORDS)]
    assert not found, "core messages that name Blender controls:\n" + "\n".join(found)
