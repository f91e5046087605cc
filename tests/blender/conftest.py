"""Fixtures of the tests in real Blender (the bpy module); ``blender`` and ``addon``
are in tests/conftest.py."""
import pytest

from runway_addon.core.runtimes.process import default_cache_dir
from tests.helpers import ADDON_PKG, ROOT, mod

TEST_MODELS = ROOT / "tests" / "model_servers" / "process"


@pytest.fixture
def runway(blender):
    """The add-on with the test models in its catalog and the shared model cache."""
    directory, props, catalog = mod("blender.directory"), mod("blender.props"), \
        mod("core.catalog")
    prefs = blender.context.preferences.addons[ADDON_PKG].preferences
    saved_cache = prefs.cache_folder
    prefs.cache_folder = str(default_cache_dir())
    cat = catalog.Catalog.load([catalog.builtin_models_dir(), TEST_MODELS])
    assert not cat.errors, cat.errors
    directory._state["catalog"] = cat
    props.build(cat)
    yield blender
    mod("blender.engine").shutdown()
    prefs.cache_folder = saved_cache
    directory._state["catalog"] = None
    props.build(directory.get_catalog())
