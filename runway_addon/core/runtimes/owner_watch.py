"""Runs a model server and ends it when its owner (Blender) is gone. Standard
library only: it runs under the model environment's Python, as the leader of
the server's process group (the server is its child), so stopping the group
the usual way stops both.

    python owner_watch.py OWNER_PID OWNER_START_TIME -- SERVER ARGV...

A farm that cancels a task kills Blender alone (Flamenco sends SIGKILL to it,
not to its group): without this the server would run on until the next
start-up clean-up. Every second the owner is checked; once it has exited (or
its pid belongs to another process, told apart by its start time), the group
gets SIGTERM, then SIGKILL after a grace period. The server's exit status is
this script's.
"""
import os
import signal
import subprocess
import sys
import time

GRACE = 3.0
INTERVAL = 1.0


def start_time(pid: int):
    """The process's start time in clock ticks since boot (Linux); elsewhere
    "alive"; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
        return "alive"
    except ProcessLookupError:
        return None
    except PermissionError:
        return "alive"


def owner_gone(owner: int, recorded: str) -> bool:
    """``recorded`` is the runtime's "<boot id>:<ticks>" (or empty: pid only)."""
    now = start_time(owner)
    ticks = recorded.rsplit(":", 1)[-1]
    return now is None or (ticks not in ("", "alive") and now not in (ticks, "alive"))


def main(argv: list) -> int:
    owner, recorded, server = int(argv[0]), argv[1], argv[3:]
    # The group's SIGTERM (a normal stop) is for the server: this script waits for it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = subprocess.Popen(server, preexec_fn=lambda: (
        signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGINT,
                                                                     signal.SIG_DFL)))
    next_check = 0.0
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + INTERVAL
        if owner_gone(owner, recorded):
            break
    sys.stderr.write(f"[runway] owner {owner} is gone: stopping the model server\n")
    sys.stderr.flush()
    group = os.getpgid(0)
    os.killpg(group, signal.SIGTERM)
    try:
        return child.wait(timeout=GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(group, signal.SIGKILL)  # this script too
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
