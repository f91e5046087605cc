"""Run a real Runway Model SDK model file (runway-python 0.6.1) under Python 3.9+.

    python launch.py MODEL.py

The SDK calls base64.decodestring, removed in Python 3.9; the vendored README's
two-line fix is applied before the model runs. Port and options come from
RW_HOST / RW_PORT / RW_MODEL_OPTIONS, as the SDK reads them.
"""
import base64
import runpy
import sys

base64.decodestring = base64.decodebytes  # type: ignore[attr-defined]
runpy.run_path(sys.argv[1], run_name="__main__")
