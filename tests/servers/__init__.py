"""Servers the tests start as subprocesses (stand-ins for what cannot run here)."""
import subprocess


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate a server process, killing it if it does not exit within ``grace``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
