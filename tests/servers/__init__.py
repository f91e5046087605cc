"""Servers the tests start as subprocesses (stand-ins for what cannot run here)."""
import subprocess
import time


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate a server process, killing it if it does not exit within ``grace``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(predicate, timeout: float = 15.0, step: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def docker_engine(timeout: int = 60):
    """A Docker client that answered a ping. No engine is a failure, not a skip:
    CI starts dockerd, so a missing engine means a broken run."""
    import docker
    import pytest
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 (reported as the failure)
        pytest.fail(f"no Docker engine reachable ({exc}); start dockerd (.ci/run does)",
                    pytrace=False)
