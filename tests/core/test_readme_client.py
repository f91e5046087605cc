"""The README's client-API block runs as written, in a checkout and from an installed
extension, against a real Cog server, in a plain Python without bpy."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.network  # a loopback port


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Client API: models from plain Python"):]
    section = section[:section.index("\n## ", 3)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the README's client-API section has no python block"
    return blocks[0]


def run_block(code: str, path_entry: Path, cwd: Path) -> subprocess.CompletedProcess:
    # The interpreter has the dependencies but not bpy, and nothing of ours on its path
    # but the one folder the README names.
    prelude = ("import sys\n"
               "sys.modules['bpy'] = None  # any import of bpy fails\n"
               f"sys.path.insert(0, {str(path_entry)!r})\n")
    return subprocess.run([sys.executable, "-I", "-c", prelude + code], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def check(proc: subprocess.CompletedProcess, cwd: Path) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "[('image', 'image'), ('delay', 'number')]"
    saved = Path(cwd, lines[1].split()[0])
    assert saved.parent.resolve() == cwd.resolve() and saved.suffix == ".png"
    with Image.open(saved) as im:  # the model inverted the black image it was sent
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape == (64, 64, 3) and (pixels == 255).all()


def test_readme_block_runs_in_a_checkout(cog_servers, tmp_path):
    code = readme_block().replace("http://127.0.0.1:5000", cog_servers.get("image").url)
    check(run_block(code, ROOT, tmp_path), tmp_path)


def test_readme_block_runs_from_an_installed_extension(cog_servers, tmp_path, linux_zip):
    # Laid out as Blender installs it: extensions/user_default/<id>/...
    user_default = tmp_path / "extensions" / "user_default"
    with zipfile.ZipFile(linux_zip) as z:
        z.extractall(user_default / "runway")
    code = readme_block()
    assert "from runway_addon.core.client import connect" in code
    assert "from runway.core.client import connect" in (ROOT / "README.md").read_text()
    code = code.replace("runway_addon.", "runway.").replace(
        "http://127.0.0.1:5000", cog_servers.get("image").url)
    check(run_block(code, user_default, tmp_path), tmp_path)
