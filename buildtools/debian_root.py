"""The Debian root: a Debian 13 "trixie" file system with Blender 4.3.2 (Python 3.13), and
running commands inside it.

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

Blender itself is driven by ``blender_driver``; ``debian_blender`` is the command line.
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
        line = version_line(r.stdout)
        if r.returncode != 0 or not line:
            raise RootError(f"blender --version failed in the new root:\n{r.stdout}\n{r.stderr}")
        stamp = {
            "format": STAMP_FORMAT,
            "suite": SUITE,
            "mirror": MIRROR,
            "packages": list(PACKAGES),
            "blender_version": line,
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
    _timed(log, f"root ready: {line}", started)


def _run_in_build(build: Path, argv: list[str], log: Log, timeout: float) -> None:
    log(f"[debian_blender] (chroot) $ {shlex.join(argv)}")
    r = run_in_root(
        argv, root=build, env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=timeout
    )
    if r.returncode != 0:
        raise RootError(f"{shlex.join(argv)} failed in the root:\n{(r.stdout + r.stderr)[-4000:]}")


def version_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("Blender "):
            return line.strip()
    return ""
