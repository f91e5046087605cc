"""OS process control for the local runtimes: process identity (pid + start
time, so a reused pid is never taken for ours), ending a whole process group,
loopback ports, atomic JSON records, and the one rule that says whether the
Blender that started something (a server, a container) is still running.

POSIX first (own session, ``os.killpg``); on Windows a child gets
CREATE_NEW_PROCESS_GROUP and is ended with ``taskkill /T``. Only Linux is tested.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

HOST = "127.0.0.1"  # local model servers listen on loopback only
OWNER_TAG = "runway-blender"  # marks pid files (and server env) as ours
_WINDOWS = os.name == "nt"
_LINUX = sys.platform.startswith("linux")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> Optional[str]:
    """An opaque token that changes when ``pid`` is reused; None when no such process."""
    if _LINUX:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # Field 22 (start time in clock ticks since boot), counted after the
        # command name, which may itself hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        return f"{_boot_id()}:{fields[19]}"
    if _WINDOWS:
        return _windows_start_time(pid)
    try:  # macOS and other POSIX systems
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _windows_start_time(pid: int) -> Optional[str]:
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return None
    try:
        times = [wintypes.FILETIME() for _ in range(4)]
        if not kernel32.GetProcessTimes(handle, *[ctypes.byref(t) for t in times]):
            return None
        return f"{times[0].dwHighDateTime}:{times[0].dwLowDateTime}"
    finally:
        kernel32.CloseHandle(handle)


def process_cmdline(pid: int) -> Optional[list[str]]:
    """The command line of ``pid`` as a list, or None where it cannot be read."""
    if _LINUX:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]
    if _WINDOWS:
        return None  # not checked on Windows: pid + creation time must do
    try:
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().split() or None


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in process group ``pgid``."""
    if _LINUX:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            # fields[0] = state, fields[2] = pgrp; zombies wait for their reaper.
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


def kill_process_tree(pid: int, grace: float = 3.0) -> bool:
    """End the process group led by ``pid`` (SIGTERM, SIGKILL after ``grace``).

    True when nothing of it is left. The caller keeps ``pid`` unreaped (its own
    child) or has checked that it is still the process it means, so the group
    id cannot belong to anyone else.
    """
    if _WINDOWS:
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], capture_output=True)
        return wait_until(lambda: process_start_time(pid) is None, grace)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if wait_until(lambda: not group_alive(pid), wait):
            return True
    return False


def popen_group_kwargs() -> dict:
    """Start a child as leader of its own group, so the server and the worker
    it spawns can be ended together, and Ctrl+C in a terminal does not reach it."""
    if _WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None



def owner_record() -> dict:
    """Who started something: this process, told apart from a later one that
    reuses its pid by its start time (see ``owner_alive``)."""
    me = os.getpid()
    return {"tag": OWNER_TAG, "owner_pid": me, "owner_start_time": process_start_time(me),
            "host": socket.gethostname()}


def owner_alive(pid, start_time, host: Optional[str] = None) -> bool:
    """Whether the owner recorded as ``pid``/``start_time`` (and ``host``, where
    it was recorded) still runs: on this machine, that pid alive and, where a
    start time was recorded, still the same process (so this Blender counts as
    alive, and a crashed one whose pid was reused, this Blender's included, does
    not). Everything left by an owner that is gone is an orphan."""
    if host is not None and host != socket.gethostname():
        return False
    if not isinstance(pid, int) or pid <= 0:
        return False
    now = process_start_time(pid)
    if start_time:
        return now == start_time
    return now is not None  # recorded before start times were


def alive_as_recorded(pid, start_time, cmdline=None) -> bool:
    """Whether ``pid`` is still the process that was recorded with this start
    time (and command line, where it can be read): only then may it be signalled."""
    if not start_time or not owner_alive(pid, start_time):
        return False
    if cmdline is not None:
        now = process_cmdline(pid)
        if now is not None and now != cmdline:
            return False
    return True


def output_tail(text: str, lines: int = 30) -> str:
    """The last ``lines`` lines of a process's output (for error details)."""
    return "\n".join(text.rstrip().splitlines()[-lines:])
