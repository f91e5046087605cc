"""Run the real Cog HTTP server for a model folder from the model's own env.

Usage::

    python models/tools/serve.py NAME --port PORT [--host 127.0.0.1]

Exactly the launch of protocols/cog-http.md: cwd = the model folder (the
predictor reference and .cog/openapi_schema.json resolve against it), the env's
bin first on PATH (coglet starts its worker as a bare ``python``),
COG_PREDICT_TYPE_STUB=predict.py:Predictor, PORT=<port>, and
``python -m cog.server.http --host 127.0.0.1``. The env is built first if it is
missing (env.py). Runs in the foreground until Ctrl-C / SIGTERM.

As a library (check.py, gallery.py): ``start(name, port)`` returns the Popen,
``wait_ready(port)`` polls GET /health-check until READY, ``stop(proc, port)``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_dir, model_dir  # noqa: E402
from env import ensure_env  # noqa: E402


def server_command(name: str, port: int, host: str = "127.0.0.1") -> tuple[list[str], dict, Path]:
    """(argv, environment, cwd) of the server process for one model folder."""
    venv = env_dir(name)
    env = dict(os.environ)
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
        "PORT": str(port),
    })
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return [str(venv / "bin" / "python"), "-m", "cog.server.http", "--host", host], env, model_dir(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, port: int, host: str = "127.0.0.1", log=None) -> subprocess.Popen:
    ensure_env(name, quiet=True)
    argv, env, cwd = server_command(name, port, host)
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT if log else None,
                            start_new_session=True)


def health(port: int, host: str = "127.0.0.1") -> dict:
    with urllib.request.urlopen(f"http://{host}:{port}/health-check", timeout=5) as r:
        return json.loads(r.read())


def wait_ready(port: int, timeout: float = 300.0, proc: subprocess.Popen | None = None,
               host: str = "127.0.0.1") -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            last = health(port, host)
        except OSError:
            time.sleep(0.1)
            continue
        status = last.get("status")
        if status == "READY":
            return last
        if status in ("SETUP_FAILED", "DEFUNCT"):
            raise RuntimeError(f"server {status}: {last.get('setup', {}).get('logs', '')}")
        time.sleep(0.1)
    raise TimeoutError(f"not READY after {timeout} s: {last}")


def stop(proc: subprocess.Popen, port: int | None = None, host: str = "127.0.0.1") -> None:
    if proc.poll() is None and port is not None:
        try:  # the server's own shutdown also ends its worker
            urllib.request.urlopen(urllib.request.Request(
                f"http://{host}:{port}/shutdown", method="POST"), timeout=5).read()
            proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - fall back to signals below
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    proc = start(args.name, args.port, args.host)
    t0 = time.monotonic()
    try:
        wait_ready(args.port, proc=proc, host=args.host)
        print(f"{args.name}: READY on http://{args.host}:{args.port} "
              f"after {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(proc, args.port, args.host)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(main(sys.argv[1:]))
