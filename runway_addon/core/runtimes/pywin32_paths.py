"""Finish pywin32's setup by hand on Windows.

docker-py reaches Docker Desktop through a named pipe with pywin32. pywin32
normally adds its folders to sys.path and its DLL folder to the DLL search path
from a `.pth` file at interpreter start-up, and Blender ignores `.pth` files.
This does the same, once, before a Docker client is created. Not exercised by
the tests (no Windows machine); see the README's Windows caveat.
"""
from __future__ import annotations

import os
import sys

_done = False


def ensure_pywin32_paths() -> bool:
    """Make pywin32 importable; True when it is (always False off Windows)."""
    global _done
    if sys.platform != "win32":
        return False
    if _done:
        return True
    for site in list(sys.path):
        win32_dir = os.path.join(site, "win32")
        if not os.path.isdir(win32_dir):
            continue
        for sub in ("win32", os.path.join("win32", "lib"), "Pythonwin"):
            path = os.path.join(site, sub)
            if os.path.isdir(path) and path not in sys.path:
                sys.path.append(path)
        dll_dir = os.path.join(site, "pywin32_system32")
        if os.path.isdir(dll_dir) and hasattr(os, "add_dll_directory"):
            os.add_dll_directory(dll_dir)
        try:
            import pywin32_bootstrap  # noqa: F401  (what the .pth would import)
        except ImportError:
            pass
        _done = True
        return True
    return False
