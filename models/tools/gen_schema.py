"""Write ``models/<name>/.cog/openapi_schema.json`` from the predictor's signature.

Usage::

    python models/tools/gen_schema.py NAME [NAME ...] | --all [--check]

The Cog server needs that file (GET /openapi.json, input validation); the Go
``cog build`` would write it, but the Go CLI is not on the package index. The
schema comes from cog 0.23.1's own inspector (``cog._inspector.create_predictor``,
what the server itself uses), assembled into OpenAPI 3.0.2 by
``build_schema()`` in tests/cog_models/gen_schemas.py, which this script reuses
rather than repeats. It runs inside the model's own environment (built first
with env.py if needed) because importing predict.py imports the model's packages.
``--check`` writes nothing and exits 1 when a schema is stale.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import ROOT, env_python, model_dir, names_from_args  # noqa: E402

BUILDER = ROOT / "tests" / "cog_models" / "gen_schemas.py"


def _print_schema(folder: str) -> None:
    """Runs in the model's env: print the schema JSON for one model folder."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_runway_cog_schema", BUILDER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    schema = mod.build_schema(Path(folder))
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")


def schema_text(name: str) -> str:
    from env import ensure_env

    ensure_env(name, quiet=True)
    d = model_dir(name)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    # mediapipe/absl/onnxruntime log to stderr on import; only stdout is the schema.
    res = subprocess.run([str(env_python(name)), __file__, "--inner", str(d)], cwd=d, env=env,
                         check=True, stdout=subprocess.PIPE, text=True)
    return res.stdout


def main(argv: list[str]) -> int:
    if argv[:1] == ["--inner"]:
        _print_schema(argv[1])
        return 0
    check = "--check" in argv
    stale = []
    for name in names_from_args([a for a in argv if a != "--check"]):
        text = schema_text(name)
        target = model_dir(name) / ".cog" / "openapi_schema.json"
        if check:
            if not target.is_file() or target.read_text() != text:
                stale.append(name)
            continue
        target.parent.mkdir(exist_ok=True)
        target.write_text(text)
        print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print("stale schemas: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
