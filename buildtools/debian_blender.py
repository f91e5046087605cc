"""A real Blender binary (Debian 13 "trixie": Blender 4.3.2, Python 3.13) in a Debian root:
the command line, and one import for callers. The root and running commands in it are in
``debian_root``; Blender in it (install, scripts, screenshots) in ``blender_driver``.

Command line (run from the repository root, as root)::

    python3 -m buildtools.debian_blender build        # build the root (once)
    python3 -m buildtools.debian_blender check        # build if needed, print version, numpy
    python3 -m buildtools.debian_blender screenshot OUT.png [SCRIPT.py]
    python3 -m buildtools.debian_blender install ZIP USER_DIR
    python3 -m buildtools.debian_blender unmount      # unmount leftovers under the root
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from .blender_driver import (blender_version, disable_splash, install_extension,  # noqa: F401
                             run_blender_python, screenshot, user_env, _prepare_user_dir)
from .debian_root import (BASE_ENV, DEFAULT_ROOT, RootError, _mount_plan,  # noqa: F401
                          _remove_created, default_root, ensure_root, is_complete, mounts_under,
                          read_stamp, run_in_root, unique_mount_point, unmount_all_under)

def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    t = time.monotonic()
    if cmd == "build":
        ensure_root()
        print(f"ensure_root: {time.monotonic() - t:.2f} s")
        return 0
    if cmd == "unmount":
        root = default_root()
        for base in [root, *root.parent.glob(f".{root.name}.build-*")]:
            print("\n".join(unmount_all_under(base)) or f"nothing mounted under {base}")
        return 0
    if cmd == "check":
        root = ensure_root()
        print(f"ensure_root: {time.monotonic() - t:.2f} s ({root})")
        t = time.monotonic()
        print(f"version: {blender_version(root)} ({time.monotonic() - t:.2f} s)")
        t = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="rw-blender-user-") as user:
            point = unique_mount_point()
            r = run_in_root(
                ["blender", "-b", "--factory-startup", "--python-exit-code", "1", "--python-expr",
                 "import bpy, sys, numpy; print('RW version', bpy.app.version_string, "
                 "'python', sys.version.split()[0], 'numpy', numpy.__version__)"],
                root=root,
                binds={_prepare_user_dir(user): f"{point}/user"},
                env=user_env(f"{point}/user"),
                timeout=300,
            )
        lines = [l for l in r.stdout.splitlines() if l.startswith("RW version")]
        print(f"blender -b: rc={r.returncode} {lines[0] if lines else r.stdout + r.stderr} "
              f"({time.monotonic() - t:.2f} s)")
        left = mounts_under(root)
        print(f"mounts left under the root: {left or 'none'}")
        return 0 if r.returncode == 0 and lines and not left else 1
    if cmd == "screenshot":
        out = Path(rest[0])
        script = Path(rest[1]) if len(rest) > 1 else None
        root = ensure_root()
        with tempfile.TemporaryDirectory(prefix="rw-blender-user-") as user:
            r = screenshot(root, script, out, user)
        print(r.stdout + r.stderr)
        print(f"screenshot: rc={r.returncode} {out} exists={out.exists()} "
              f"({time.monotonic() - t:.1f} s)")
        return r.returncode
    if cmd == "install":
        r = install_extension(ensure_root(), rest[0], rest[1])
        print(r.stdout + r.stderr)
        return r.returncode
    print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
