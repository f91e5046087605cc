"""A real Blender binary (Debian 13 "trixie": Blender 4.3.2, Python 3.13) in a Debian root.

Standard library only: this runs before anything else is installed.

The root file system is built once with ``debootstrap`` into a temporary sibling folder and
renamed into place when complete, so a killed build never leaves a root that looks complete.
Later calls find its stamp file and return at once.

Commands run inside the root with ``chroot``.  The file systems Blender needs (``/proc``,
``/dev``, a private ``/dev/shm`` and ``/tmp``) and the caller's bind mounts are mounted, by
default, inside a private mount namespace (``unshare --mount``): the host never sees them, and
they vanish with the last process of the call even when it is killed.  Where ``unshare`` is not
usable (or ``RUNWAY_BLENDER_MOUNT_MODE=host``), they are mounted in the host namespace under a
lock and always unmounted in a ``finally``; leftovers of a killed run are found in
``/proc/mounts`` and unmounted first.

Command line (run from the repository root, as root)::

    python3 -m buildtools.debian_blender build        # build the root (once)
    python3 -m buildtools.debian_blender check        # build if needed, print version, numpy
    python3 -m buildtools.debian_blender screenshot OUT.png [SCRIPT.py]
    python3 -m buildtools.debian_blender install ZIP USER_DIR
    python3 -m buildtools.debian_blender unmount      # unmount leftovers under the root
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

DEFAULT_ROOT = Path("/var/cache/runway-for-blender/debian-trixie-blender")
ROOT_ENV = "RUNWAY_BLENDER_ROOT"
MOUNT_MODE_ENV = "RUNWAY_BLENDER_MOUNT_MODE"  # "namespace" (default when possible) or "host"
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "blender",
    "xvfb",
    "xauth",
    "imagemagick",
    "xdotool",
    "python3-numpy",
    "python3-requests",
)
STAMP_NAME = ".runway-blender-root.json"
STAMP_FORMAT = 2  # 2: /etc/mtab link (Blender reads the mounted file systems)

# Environment inside the root: nothing of the host's environment leaks in (a host PYTHONPATH
# or virtual environment would break Blender's own Python).
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
}
# Where the host's programs are found (debootstrap, mount, chroot, unshare).
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Log = Callable[[str], None]


class RootError(RuntimeError):
    """The Debian root could not be built or used."""


# --------------------------------------------------------------------------------------------
# Locations and the stamp


def default_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _root(root: Path | str | None) -> Path:
    return Path(root) if root is not None else default_root()


def read_stamp(root: Path | str | None = None) -> dict | None:
    """The stamp of a complete root, or None."""
    root = _root(root)
    try:
        data = json.loads((root / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != STAMP_FORMAT or not (root / "usr/bin/blender").exists():
        return None
    return data


def is_complete(root: Path | str | None = None) -> bool:
    return read_stamp(root) is not None


# --------------------------------------------------------------------------------------------
# Mount bookkeeping


def _unescape_mount_path(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path: Path | str) -> list[str]:
    """Mount points at or under ``path`` in this process's namespace, deepest first."""
    base = os.path.realpath(path)
    found = []
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) < 2:
            continue
        target = _unescape_mount_path(parts[1])
        if target == base or target.startswith(base.rstrip("/") + "/"):
            found.append(target)
    # Deepest first; a path mounted several times is listed once per mount.
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _umount(target: str) -> bool:
    r = subprocess.run(["umount", target], capture_output=True, text=True, env={"PATH": HOST_PATH})
    if r.returncode != 0:
        # Busy (a process still holds it): detach it now, it goes when released.
        r = subprocess.run(
            ["umount", "-l", target], capture_output=True, text=True, env={"PATH": HOST_PATH}
        )
    return r.returncode == 0


def unmount_all_under(path: Path | str, log: Log | None = None) -> list[str]:
    """Unmount every mount at or under ``path`` (leftovers of a killed run). Returns them."""
    done = []
    for _ in range(20):  # stacked mounts need several rounds
        targets = mounts_under(path)
        if not targets:
            break
        for target in targets:
            if _umount(target):
                done.append(target)
                if log:
                    log(f"unmounted leftover {target}")
    left = mounts_under(path)
    if left:
        raise RootError(f"cannot unmount {left}")
    return done


def _safe_rmtree(path: Path, log: Log | None = None) -> None:
    """Remove a (half-built) root: never while anything is mounted under it, never across
    a file system boundary."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_all_under(path, log)
    top_dev = path.lstat().st_dev

    def walk(p: str) -> None:
        with os.scandir(p) as it:
            entries = list(it)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.stat(follow_symlinks=False).st_dev != top_dev:
                    raise RootError(f"refusing to delete across a mount: {e.path}")
                walk(e.path)
                os.rmdir(e.path)
            else:
                os.unlink(e.path)

    walk(str(path))
    os.rmdir(path)


# --------------------------------------------------------------------------------------------
# Running commands inside the root


def _inside(root: Path, path_in_root: str) -> Path:
    """The host path of ``path_in_root``, refusing anything that resolves outside the root."""
    if not path_in_root.startswith("/"):
        raise ValueError(f"path in root must be absolute: {path_in_root!r}")
    host = Path(os.path.realpath(str(root) + path_in_root))
    real_root = os.path.realpath(root)
    if not (str(host) == real_root or str(host).startswith(real_root + "/")):
        raise ValueError(f"{path_in_root!r} resolves outside the root ({host})")
    return host


def _use_namespace() -> bool:
    mode = os.environ.get(MOUNT_MODE_ENV, "").strip().lower()
    if mode == "host":
        return False
    if mode == "namespace":
        return True
    return _namespace_works()


_NAMESPACE_OK: bool | None = None


def _namespace_works() -> bool:
    global _NAMESPACE_OK
    if _NAMESPACE_OK is None:
        try:
            r = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "true"],
                capture_output=True,
                timeout=20,
                env={"PATH": HOST_PATH},
            )
            _NAMESPACE_OK = r.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _NAMESPACE_OK = False
    return _NAMESPACE_OK


def _mount_plan(
    root: Path,
    binds: Mapping[str | Path, str] | None,
    ro_binds: Mapping[str | Path, str] | None,
) -> tuple[list[list[str]], list[Path]]:
    """Mount commands (in order) and the mount points the call created (to remove after)."""
    created: list[Path] = []

    def ensure_point(host_target: Path, is_dir: bool) -> None:
        missing = []
        p = host_target if is_dir else host_target.parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
        if not is_dir and not host_target.exists():
            host_target.touch()
            created.append(host_target)

    r = str(root)
    cmds: list[list[str]] = [
        ["mount", "-t", "proc", "proc", r + "/proc"],
        ["mount", "--bind", "/dev", r + "/dev"],
        ["mount", "--bind", "/dev/pts", r + "/dev/pts"],
        ["mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", r + "/dev/shm"],
        ["mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", r + "/tmp"],
    ]
    for sub in ("proc", "dev", "tmp"):
        (root / sub).mkdir(exist_ok=True)
    for items, ro in ((binds or {}, False), (ro_binds or {}, True)):
        for host, in_root in items.items():
            host = Path(host).resolve()
            if not host.exists():
                raise FileNotFoundError(host)
            target = _inside(root, in_root)
            if str(target).startswith(os.path.realpath(root / "tmp") + "/") or str(
                target
            ).startswith(os.path.realpath(root / "dev") + "/"):
                raise ValueError(f"bind into /tmp or /dev is hidden by the call's own mounts: {in_root}")
            ensure_point(target, host.is_dir())
            cmds.append(["mount", "--bind", str(host), str(target)])
            if ro:
                cmds.append(["mount", "-o", "remount,bind,ro", str(target)])
    return cmds, created


def _remove_created(created: list[Path]) -> None:
    for p in reversed(created):
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                p.rmdir()  # only if empty: never delete through a live mount
            else:
                if p.stat().st_size == 0:
                    p.unlink()


def _mount_lock_path(root: Path) -> Path:
    return root.parent / f".{root.name}.mount.lock"


def _clear_host_leftovers(root: Path) -> None:
    """Namespace mode: mounts under the root in the host namespace belong either to a
    host-mode call in progress (it holds the mount lock) or to a killed run: unmount those."""
    if not mounts_under(root):
        return
    with open(_mount_lock_path(root), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a host-mode call is using them
        unmount_all_under(root, log=lambda m: print(f"[debian_blender] {m}", file=sys.stderr))


@contextlib.contextmanager
def _host_mounts(root: Path, cmds: list[list[str]]) -> Iterator[None]:
    """Host-namespace mounts: serialised by a lock, leftovers unmounted first, always undone."""
    with open(_mount_lock_path(root), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done: list[str] = []
        try:
            # Holding the lock, anything mounted under the root is a leftover of a killed run.
            unmount_all_under(root, log=lambda m: print(f"[debian_blender] {m}", file=sys.stderr))
            for cmd in cmds:
                r = subprocess.run(cmd, capture_output=True, text=True, env={"PATH": HOST_PATH})
                if r.returncode != 0:
                    raise RootError(f"{shlex.join(cmd)} failed: {r.stderr.strip()}")
                if "remount,bind,ro" not in cmd:
                    done.append(cmd[-1])
            yield
        finally:
            for target in reversed(done):
                _umount(target)
            if mounts_under(root):
                unmount_all_under(root)


def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_in_root(
    argv: Sequence[str],
    *,
    root: Path | str | None = None,
    binds: Mapping[str | Path, str] | None = None,
    ro_binds: Mapping[str | Path, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
    cwd_in_root: str | None = None,
    input: str | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``argv`` inside the root with ``chroot``; stdout and stderr are captured as text.

    ``binds`` / ``ro_binds`` map host paths (folders or files) to absolute paths in the root;
    use a unique path per call (see :func:`unique_mount_point`).  ``env`` is added to a clean
    environment (nothing of the host's leaks in).  On timeout the whole process group is
    killed, the mounts are gone, and :class:`subprocess.TimeoutExpired` is raised.
    """
    root = _root(root)
    if not (root / "usr/bin").is_dir():
        raise RootError(f"no root file system at {root}")
    cmds, created = _mount_plan(root, binds, ro_binds)
    full_env = dict(BASE_ENV)
    full_env.update(env or {})
    chroot_cmd = [
        "chroot",
        str(root),
        "/bin/sh",
        "-c",
        'cd "$0" && exec "$@"',
        cwd_in_root or "/",
        *argv,
    ]
    namespace = _use_namespace()
    if namespace:
        _clear_host_leftovers(root)
        # Mount inside a private mount namespace, then exec chroot: the mounts exist only for
        # this call's processes and disappear with the last of them, even after SIGKILL.
        script = "set -e\n" + "\n".join(shlex.join(c) for c in cmds) + "\nexec " + shlex.join(chroot_cmd)
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]
        ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        cmd = chroot_cmd
        ctx = _host_mounts(root, cmds)
    popen_env = dict(full_env)
    popen_env["PATH"] = HOST_PATH  # host programs (unshare, mount, chroot) first; same list inside
    try:
        with ctx:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                env=popen_env,
                start_new_session=True,  # one process group: a timeout kills all of it
            )
            try:
                out, err = proc.communicate(input=input, timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                out, err = proc.communicate()
                raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err) from None
            except BaseException:
                _kill_group(proc)
                proc.communicate()
                raise
            finally:
                # Stragglers that left the group still die with the call.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
    finally:
        _remove_created(created)
        if not namespace and mounts_under(root):
            unmount_all_under(root)
    result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, list(argv), out, err)
    return result


def unique_mount_point(name: str = "") -> str:
    """A fresh path in the root for one call's bind mounts, e.g. ``/mnt/rw-3f9a1c2b``."""
    return f"/mnt/rw-{secrets.token_hex(4)}" + (f"-{name}" if name else "")


# --------------------------------------------------------------------------------------------
# Building the root


def _timed(log: Log, what: str, started: float) -> None:
    log(f"[debian_blender] {what} ({time.monotonic() - started:.1f} s)")


def _run_host(cmd: Sequence[str], log: Log, **kw) -> None:
    log(f"[debian_blender] $ {shlex.join(cmd)}")
    env = dict(os.environ)
    env["PATH"] = HOST_PATH + ":" + env.get("PATH", "")
    env["DEBIAN_FRONTEND"] = "noninteractive"
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env, **kw)
    if r.returncode != 0:
        tail = (r.stdout + r.stderr)[-4000:]
        raise RootError(f"{shlex.join(cmd)} failed with {r.returncode}:\n{tail}")


def _ensure_debootstrap(log: Log) -> None:
    if shutil.which("debootstrap", path=HOST_PATH):
        return
    started = time.monotonic()
    log("[debian_blender] installing debootstrap on the host")
    _run_host(["apt-get", "update"], log)
    _run_host(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"], log)
    _timed(log, "debootstrap installed", started)


def ensure_root(root: Path | str | None = None, log: Log = print) -> Path:
    """Return a complete Debian trixie root with Blender, building it on first use.

    Quick when the stamp says the root is complete.  Otherwise builds (as root; about
    3-5 minutes and 1.8 GB) into a temporary sibling folder and renames it into place.
    """
    root = _root(root)
    if is_complete(root):
        return root
    if os.geteuid() != 0:
        raise RootError("building the Blender root needs root (debootstrap, chroot, mount)")
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / f".{root.name}.build.lock"
    with open(lock_path, "w") as lock:
        waited = time.monotonic()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[debian_blender] another process is building {root}; waiting")
            fcntl.flock(lock, fcntl.LOCK_EX)
            _timed(log, "waited for the other build", waited)
        if is_complete(root):
            return root
        _build(root, log)
    return root


def _build(root: Path, log: Log) -> None:
    started = time.monotonic()
    # Holding the build lock: any other sibling build folder is a killed build.
    for stale in root.parent.glob(f".{root.name}.build-*"):
        log(f"[debian_blender] removing stale build {stale}")
        _safe_rmtree(stale, log)
    build = root.parent / f".{root.name}.build-{os.getpid()}"
    log(f"[debian_blender] building {root} (in {build})")
    try:
        _ensure_debootstrap(log)
        t = time.monotonic()
        _run_host(["debootstrap", "--variant=minbase", SUITE, str(build), MIRROR], log)
        _timed(log, "debootstrap done", t)
        unmount_all_under(build, log)  # debootstrap unmounts its own, but be sure
        shutil.copyfile("/etc/resolv.conf", build / "etc/resolv.conf")
        mtab = build / "etc/mtab"
        if not mtab.exists() and not mtab.is_symlink():
            # Without it Blender prints "could not get a list of mounted file-systems".
            mtab.symlink_to("../proc/self/mounts")
        # No services start inside the root.
        policy = build / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        t = time.monotonic()
        _run_in_build(build, ["apt-get", "update"], log, timeout=900)
        _run_in_build(
            build,
            ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
            log,
            timeout=1800,
        )
        _run_in_build(build, ["apt-get", "clean"], log, timeout=300)
        _timed(log, "packages installed", t)
        r = run_in_root(["blender", "--version"], root=build, timeout=120)
        version_line = _version_line(r.stdout)
        if r.returncode != 0 or not version_line:
            raise RootError(f"blender --version failed in the new root:\n{r.stdout}\n{r.stderr}")
        stamp = {
            "format": STAMP_FORMAT,
            "suite": SUITE,
            "mirror": MIRROR,
            "packages": list(PACKAGES),
            "blender_version": version_line,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (build / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")
        if root.exists() or root.is_symlink():
            log(f"[debian_blender] replacing incomplete {root}")
            _safe_rmtree(root, log)
        os.rename(build, root)
    except BaseException:
        with contextlib.suppress(Exception):
            _safe_rmtree(build, log)
        raise
    _timed(log, f"root ready: {version_line}", started)


def _run_in_build(build: Path, argv: list[str], log: Log, timeout: float) -> None:
    log(f"[debian_blender] (chroot) $ {shlex.join(argv)}")
    r = run_in_root(
        argv, root=build, env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=timeout
    )
    if r.returncode != 0:
        raise RootError(f"{shlex.join(argv)} failed in the root:\n{(r.stdout + r.stderr)[-4000:]}")


def _version_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("Blender "):
            return line.strip()
    return ""


# --------------------------------------------------------------------------------------------
# Blender


def blender_version(root: Path | str | None = None) -> str:
    """``Blender 4.3.2`` (the first line of ``blender --version`` in the root)."""
    r = run_in_root(["blender", "--version"], root=root, timeout=120)
    line = _version_line(r.stdout)
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


_SCREENSHOT_SH = r"""
set -u
out="$1"; size="$2"; wait_s="$3"; ready_timeout="$4"; shift 4
Xvfb -displayfd 3 -screen 0 "${size}x24" -nolisten tcp -noreset 3>/tmp/rw-display 2>/tmp/rw-xvfb.log &
xvfb=$!
for i in $(seq 200); do [ -s /tmp/rw-display ] && break; sleep 0.05; done
if [ ! -s /tmp/rw-display ]; then echo "Xvfb did not start" >&2; cat /tmp/rw-xvfb.log >&2; kill $xvfb; exit 90; fi
export DISPLAY=":$(cat /tmp/rw-display)"
echo "display $DISPLAY" >&2
"$@" > "$out.blender.log" 2>&1 &
blender=$!
t=0
while [ ! -e "$out.ready" ]; do
  if ! kill -0 $blender 2>/dev/null; then echo "Blender exited early" >&2; break; fi
  if [ $(( t )) -ge $(( ready_timeout * 10 )) ]; then echo "no ready signal; taking the picture anyway" >&2; break; fi
  sleep 0.1; t=$(( t + 1 ))
done
# Clicks, e.g. on a sidebar tab that no script can select: "x,y x,y ..."
for xy in ${RW_CLICKS:-}; do
  sleep 1; xdotool mousemove --sync "${xy%,*}" "${xy#*,}" click 1
done
sleep "$wait_s"
# A script that took the picture itself (at a moment it chose) has written "$out": keep it.
rc=0
[ -s "$out" ] || { import -display "$DISPLAY" -window root "$out"; rc=$?; }
if ! kill -0 $blender 2>/dev/null; then echo "Blender is not running (see the Blender log)" >&2; rc=91; fi
kill $blender 2>/dev/null; sleep 1; kill -9 $blender 2>/dev/null
kill $xvfb 2>/dev/null; wait 2>/dev/null
exit $rc
"""

# Runs before the caller's script in the windowed Blender: once the window has drawn
# (two timer ticks after start-up), it touches the ready file; with RW_SCREENSHOT_SCRIPT_READY
# set, the caller's script touches it itself (the path is in RW_SCREENSHOT_READY).
_SCREENSHOT_PRELUDE = r'''
import bpy, sys, os
_rw_ready = os.environ["RW_SCREENSHOT_READY"]
_rw_count = [0]
_rw_by_script = bool(os.environ.get("RW_SCREENSHOT_SCRIPT_READY"))

def _rw_tick():
    _rw_count[0] += 1
    if _rw_count[0] == 1:
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                area.tag_redraw()
        return 0.5
    with open(_rw_ready, "w") as f:
        f.write("ready\n")
    return None

if not _rw_by_script:
    bpy.app.timers.register(_rw_tick, first_interval=1.0)
'''


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
        (tmpd / "prelude.py").write_text(_SCREENSHOT_PRELUDE)
        (tmpd / "shot.sh").write_text(_SCREENSHOT_SH)
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


# --------------------------------------------------------------------------------------------
# Command line


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
