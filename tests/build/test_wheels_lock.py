"""The wheel lock and the manifest: what build.py refuses."""
import copy
import json
import zipfile

import pytest

from buildtools import dist, wheels


@pytest.fixture
def lock():
    return wheels.load_lock()


def test_the_committed_lock_covers_every_platform_and_abi(lock):
    wheels.check_coverage(lock)
    wheels.check_manifest_matches_lock(lock)
    names = {e["file"] for e in lock["wheels"]}
    for platform_tag in ("manylinux", "macosx_11_0_arm64", "win_amd64"):
        for abi in ("cp311", "cp313"):
            assert any(platform_tag in n and f"-{abi}-" in n and n.startswith("pydantic_core")
                       for n in names), (platform_tag, abi)
    # What Blender ships is never bundled.
    assert not any(wheels._dist_name(n) in wheels.PROVIDED_BY_BLENDER for n in names)


def test_a_platform_without_a_binary_wheel_fails_the_build(lock):
    broken = copy.deepcopy(lock)
    broken["wheels"] = [e for e in broken["wheels"]
                        if not (e["file"].startswith("pillow") and "cp313" in e["file"]
                                and "macosx_11_0_arm64" in e["file"])]
    with pytest.raises(SystemExit, match="pillow for macos-arm64 cp313"):
        wheels.check_coverage(broken)


def test_a_hand_edited_manifest_wheel_list_fails_the_build(lock, tmp_path, monkeypatch):
    manifest = tmp_path / "blender_manifest.toml"
    text = wheels.MANIFEST.read_text().replace('  "./wheels/docker-7.1.0-py3-none-any.whl",\n', "")
    manifest.write_text(text)
    monkeypatch.setattr(wheels, "MANIFEST", manifest)
    with pytest.raises(SystemExit, match="run `python3 build.py lock`"):
        wheels.check_manifest_matches_lock(lock)


def test_each_zip_holds_only_its_platforms_wheels_and_the_shelf(dist_dir, lock):
    for platform in wheels.PLATFORMS:
        with zipfile.ZipFile(dist.zip_for(platform)) as z:
            names = z.namelist()
            got = {n.split("/", 1)[1] for n in names if n.startswith("wheels/")}
            want = {e["file"] for e in lock["wheels"] if platform in e["platforms"]}
            assert got == want, platform
            manifest = z.read("blender_manifest.toml").decode()
            assert f'platforms = ["{platform}"]' in manifest
            # The built-in models travel with their schema (a hidden folder).
            assert "models/upscale/.cog/openapi_schema.json" in names
            assert "models/upscale/card.json" in names
            assert not any(n.startswith(("models/testdata", "models/tools")) for n in names)
