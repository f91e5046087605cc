"""The ``runway`` command line Blender 4.2+ registers: ``blender -c runway run-job ...``
runs a job file on a .blend (exit 0 done, 1 a frame failed, 2 refused), ``schema`` prints
the job file's JSON Schema."""
from __future__ import annotations

import json
import os
import sys

import bpy

from ...core import jobfile
from ...core.errors import RunwayError
from .. import engine
from .log import JsonLog
from .run import run_job


def cli(argv: list) -> int:
    """``blender -c runway run-job FILE.blend JOB.json [--frames 1-10] [--log LOG.jsonl]``."""
    import argparse
    ap = argparse.ArgumentParser(prog="blender -c runway", description=cli.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run-job", help="run a job file on a .blend")
    r.add_argument("blend")
    r.add_argument("job")
    r.add_argument("--frames", default="")
    r.add_argument("--log", default="")
    sub.add_parser("schema", help="print the job file's JSON Schema")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.cmd == "schema":
        print(json.dumps(jobfile.schema(), indent=2))
        return 0
    log = JsonLog(args.log)
    try:
        try:
            job = jobfile.load(args.job)
            bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.blend))
            report = run_job(bpy.context, job, frames=args.frames, log=log)
        except RunwayError as e:
            log("refused", message=e.message, field=getattr(e, "field", ""), hint=e.hint)
            raise
        finally:
            log.close()
            engine.shutdown()
    except RunwayError as e:
        print(f"Runway: error: {e.message}" + (f" ({e.hint})" if e.hint else ""),
              file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # a one-line reason, not a traceback, is what a farm shows
        print(f"Runway: error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 2
    if not report.ok:
        print(f"Runway: failed: {report.summary()}", file=sys.stderr, flush=True)
        return 1
    return 0


_cli = {"handle": None}


def register() -> None:
    if hasattr(bpy.utils, "register_cli_command"):  # Blender 4.2+
        _cli["handle"] = bpy.utils.register_cli_command("runway", cli)


def unregister() -> None:
    if _cli["handle"] is not None:
        bpy.utils.unregister_cli_command(_cli["handle"])
        _cli["handle"] = None
