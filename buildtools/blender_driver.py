"""Blender in the Debian root (``debian_root``): its version, an extension installed into
isolated user folders, a background Python script, and a screenshot of a real window under
Xvfb. The screenshot's shell script and the Python prelude it runs first are real files next
to this one (``blender_screenshot.sh``, ``blender_screenshot_prelude.py``), read at run time.

Standard library only, like ``debian_root``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from .debian_root import RootError, version_line, run_in_root, unique_mount_point

HERE = Path(__file__).resolve().parent
SCREENSHOT_SCRIPT = HERE / "blender_screenshot.sh"
SCREENSHOT_PRELUDE = HERE / "blender_screenshot_prelude.py"

def blender_version(root: Path | str | None = None) -> str:
    """``Blender 4.3.2`` (the first line of ``blender --version`` in the root)."""
    r = run_in_root(["blender", "--version"], root=root, timeout=120)
    line = version_line(r.stdout)
    if r.returncode != 0 or not line:
        raise RootError(f"blender --version failed:\n{r.stdout}\n{r.stderr}")
    return line


def user_env(user_in_root: str) -> dict[str, str]:
    """Environment that keeps Blender's user folders inside ``user_in_root``.

    Blender 4.2+ reads ``BLENDER_USER_RESOURCES`` (the folder that holds config/, scripts/,
    extensions/, datafiles/); the finer variables are set to the same places so that every
    Blender from 4.2 on agrees.  ``HOME`` is moved too, so nothing else in the root is touched.
    """
    u = user_in_root.rstrip("/")
    return {
        "BLENDER_USER_RESOURCES": u,
        "BLENDER_USER_CONFIG": f"{u}/config",
        "BLENDER_USER_SCRIPTS": f"{u}/scripts",
        "BLENDER_USER_EXTENSIONS": f"{u}/extensions",
        "BLENDER_USER_DATAFILES": f"{u}/datafiles",
        "HOME": f"{u}/home",
        "XDG_CONFIG_HOME": f"{u}/home/.config",
        "XDG_CACHE_HOME": f"{u}/home/.cache",
    }


def _prepare_user_dir(user_dir: Path | str) -> Path:
    user_dir = Path(user_dir).resolve()
    for sub in ("config", "scripts", "extensions", "datafiles", "home"):
        (user_dir / sub).mkdir(parents=True, exist_ok=True)
    return user_dir


def install_extension(
    root: Path | str | None,
    zip_path: Path | str,
    user_dir: Path | str,
    *,
    repo: str = "user_default",
    enable: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """``blender --command extension install-file -r REPO [-e] ZIP`` with isolated user folders.

    ``user_dir`` (a host folder) is bind-mounted into the root and holds everything Blender
    writes: the extension lands in ``user_dir/extensions/<repo>/<id>`` and, with ``enable``,
    the preferences that enable it in ``user_dir/config/userpref.blend``.
    """
    zip_path = Path(zip_path).resolve()
    user_dir = _prepare_user_dir(user_dir)
    point = unique_mount_point()
    argv = ["blender", "--command", "extension", "install-file", "-r", repo]
    if enable:
        argv.append("-e")
    argv.append(f"{point}/zip/{zip_path.name}")
    return run_in_root(
        argv,
        root=root,
        binds={user_dir: f"{point}/user"},
        ro_binds={zip_path.parent: f"{point}/zip"},
        env=user_env(f"{point}/user"),
        timeout=timeout,
    )


def run_blender_python(
    root: Path | str | None,
    script: str | Path,
    user_dir: Path | str,
    args: Sequence[str] = (),
    *,
    factory_startup: bool = False,
    blender_args: Sequence[str] = (),
    binds: Mapping[str | Path, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """``blender -b [--factory-startup] [BLENDER_ARGS] --python SCRIPT -- ARGS`` in the root.

    ``script`` is a :class:`Path` to a host file, or Python source text.  Without
    ``factory_startup`` the isolated preferences load, so an extension installed with
    ``install_extension(enable=True)`` is already enabled; with it, the extension is still
    found in the user repository and can be enabled with ``addon_enable``.
    """
    user_dir = _prepare_user_dir(user_dir)
    point = unique_mount_point()
    with tempfile.TemporaryDirectory(prefix="rw-blender-script-") as tmp:
        if isinstance(script, Path):
            script_host = script.resolve()
        else:
            script_host = Path(tmp) / "script.py"
            script_host.write_text(script)
        all_binds = {user_dir: f"{point}/user"}
        all_binds.update(binds or {})
        argv = ["blender", "-b"]
        if factory_startup:
            argv.append("--factory-startup")
        argv += [*blender_args, "--python-exit-code", "1", "--python", f"{point}/script/{script_host.name}"]
        if args:
            argv += ["--", *args]
        full_env = user_env(f"{point}/user")
        full_env.update(env or {})
        return run_in_root(
            argv,
            root=root,
            binds=all_binds,
            ro_binds={script_host.parent: f"{point}/script"},
            env=full_env,
            timeout=timeout,
        )


def disable_splash(root: Path | str | None, user_dir: Path | str) -> None:
    """Save the isolated preferences with the splash screen off (other settings, such as
    enabled extensions, are kept)."""
    r = run_blender_python(
        root,
        "import bpy\n"
        "if bpy.context.preferences.view.show_splash:\n"
        "    bpy.context.preferences.view.show_splash = False\n"
        "    bpy.ops.wm.save_userpref()\n",
        user_dir,
        timeout=120,
    )
    if r.returncode != 0:
        raise RootError(f"could not save preferences:\n{r.stdout}\n{r.stderr}")


def screenshot(
    root: Path | str | None,
    script: str | Path | None,
    out_png: Path | str,
    user_dir: Path | str,
    *,
    size: str = "1600x900",
    wait_s: float = 2.0,
    hide_splash: bool = True,
    ready_timeout: float = 120.0,
    blender_args: Sequence[str] = (),
    args: Sequence[str] = (),
    binds: Mapping[str | Path, str] | None = None,
    ro_binds: Mapping[str | Path, str] | None = None,
    timeout: float = 300,
    clicks: Sequence[tuple[int, int]] = (),
    script_ready: bool = False,
) -> subprocess.CompletedProcess:
    """Screenshot of a real Blender window under Xvfb in the root.

    Starts Xvfb on a free display (``-displayfd``), runs Blender with a window of ``size``,
    the given ``script`` (Path or source text; ``None`` for the default window), waits until the
    window has drawn (a timer in Blender touches a ready file) plus ``wait_s`` seconds, saves
    ``import -window root`` to ``out_png`` and stops Blender and Xvfb.  Blender's log is
    written next to the PNG as ``<out>.blender.log``.  Exit status 91: Blender was no longer
    running when the picture was taken (it is probably black).

    With ``hide_splash`` the isolated preferences are saved once with the splash turned off
    (else the first start shows the "Quick Setup" splash over the window). ``clicks``: window
    coordinates clicked (xdotool) once the window is ready, before the wait.

    With ``script_ready`` the ``script`` itself says when the picture may be taken (e.g. once
    a run it started is done): it writes the file named by the environment variable
    ``RW_SCREENSHOT_READY``; ``ready_timeout`` bounds the wait.  A script that must catch a
    moment (a run in flight) may take the picture itself, ``import -window root`` to that
    name without ``.ready``, before it writes the ready file: the picture is then kept.
    ``ro_binds`` are mounted read-only, like ``binds``.
    """
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    user_dir = _prepare_user_dir(user_dir)
    if hide_splash:
        disable_splash(root, user_dir)
    point = unique_mount_point()
    with tempfile.TemporaryDirectory(prefix="rw-blender-shot-") as tmp:
        tmpd = Path(tmp)
        outd = tmpd / "out"
        outd.mkdir()
        shutil.copyfile(SCREENSHOT_PRELUDE, tmpd / "prelude.py")
        shutil.copyfile(SCREENSHOT_SCRIPT, tmpd / "shot.sh")
        python_args = ["--python", f"{point}/tmp/prelude.py"]
        ro = {tmpd: f"{point}/tmp"}
        if script is not None:
            if isinstance(script, Path):
                ro[script.resolve().parent] = f"{point}/script"
                python_args += ["--python", f"{point}/script/{script.name}"]
            else:
                (tmpd / "script.py").write_text(script)
                python_args += ["--python", f"{point}/tmp/script.py"]
        shot_in_root = f"{point}/out/shot.png"
        env = user_env(f"{point}/user")
        env["RW_SCREENSHOT_READY"] = shot_in_root + ".ready"
        env["RW_CLICKS"] = " ".join(f"{x},{y}" for x, y in clicks)
        if script_ready:
            env["RW_SCREENSHOT_SCRIPT_READY"] = "1"
        all_binds = {user_dir: f"{point}/user", outd: f"{point}/out"}
        all_binds.update(binds or {})
        ro.update(ro_binds or {})
        width, height = size.split("x")
        blender = ["blender", "--window-geometry", "0", "0", width, height, *blender_args,
                   *python_args]
        if args:
            blender += ["--", *args]
        r = run_in_root(
            ["/bin/bash", f"{point}/tmp/shot.sh", shot_in_root, size, str(wait_s),
             str(int(ready_timeout)), *blender],
            root=root,
            binds=all_binds,
            ro_binds=ro,
            env=env,
            timeout=timeout,
        )
        produced = outd / "shot.png"
        if produced.exists():
            shutil.copyfile(produced, out_png)
        log = outd / "shot.png.blender.log"
        if log.exists():
            shutil.copyfile(log, str(out_png) + ".blender.log")
        return r
