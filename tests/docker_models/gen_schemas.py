"""Write ``.cog/openapi_schema.json`` for each Docker test model.

Reuses the schema builder of ``tests/cog_models/gen_schemas.py`` (Cog's own
inspector; it needs cog, so this re-runs itself with ``.venv-cog``'s Python).

    python3 tests/docker_models/gen_schemas.py
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

if __name__ == "__main__":
    try:
        import cog  # noqa: F401
    except ImportError:
        from tests.cog_env import cog_python, ensure_cog_venv

        py = cog_python(ensure_cog_venv(ROOT))
        os.execv(str(py), [str(py), __file__, *sys.argv[1:]])
    from tests.cog_models.gen_schemas import build_schema

    for d in sorted(p.parent for p in HERE.glob("*/cog.yaml")):
        target = d / ".cog" / "openapi_schema.json"
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(build_schema(d), indent=2) + "\n")
        print(f"wrote {target.relative_to(ROOT)}")
