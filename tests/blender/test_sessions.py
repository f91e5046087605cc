"""The preferences choose where a shelf model runs: sessions opened from Blender."""
import importlib

import numpy as np
import pytest

from runway_addon.core.runtimes.process import default_cache_dir
from tests.helpers import ADDON_PKG

pytestmark = [pytest.mark.blender]


@pytest.fixture
def addon_modules(blender):
    def mod(name):
        return importlib.import_module(f"{ADDON_PKG}.{name}")
    return mod


@pytest.fixture
def prefs(blender):
    p = blender.context.preferences.addons[ADDON_PKG].preferences
    saved = (p.default_runtime, p.cache_folder, p.memory_limit_gb, p.docker_host,
             p.docker_publish_address)
    yield p
    (p.default_runtime, p.cache_folder, p.memory_limit_gb, p.docker_host,
     p.docker_publish_address) = saved
    while len(p.endpoints):
        p.endpoints.remove(0)


@pytest.fixture
def shelf(addon_modules):
    catalog = addon_modules("core.catalog")
    cards = catalog.Catalog.load([catalog.builtin_models_dir()])
    assert not cards.errors
    return cards


def small_picture():
    y, x = np.mgrid[0:64, 0:64]
    return np.dstack([x * 4, y * 4, np.full_like(x, 90)]).astype(np.uint8)


@pytest.mark.network
@pytest.mark.slow
def test_local_process_by_default_with_the_cache_folder_of_the_preferences(
        prefs, shelf, addon_modules):
    # The shared cache holds the shelf's environments already (other tests built them).
    prefs.cache_folder = str(default_cache_dir())
    session = addon_modules("blender.sessions").open_session(shelf.get("style-transfer"))
    assert type(session).__name__ == "ProcessSession"
    assert str(session.env_root).startswith(str(default_cache_dir()))
    try:
        session.start()
        with session.client() as client:
            out = client.run({"image": small_picture(), "strength": 1.0}).outputs["output"]
        assert out.mime == "image/png"
    finally:
        session.stop()
    assert session.state.value == "stopped"


@pytest.mark.docker
@pytest.mark.slow
def test_docker_cpu_runs_the_models_image_with_the_memory_limit(prefs, shelf, addon_modules):
    from buildtools import images
    card = shelf.get("style-transfer")
    images.build_model_image(card.folder, images.default_tag(card.folder))  # reused if built
    prefs.default_runtime, prefs.memory_limit_gb = "DOCKER_CPU", 3
    session = addon_modules("blender.sessions").open_session(card)
    assert type(session).__name__ == "DockerSession"
    assert session.image == "runway-for-blender/style-transfer:latest"
    assert session.mem_limit == 3 * 1024 ** 3 and not session.gpu
    try:
        session.start(timeout=180)
        import docker
        info = docker.from_env().api.inspect_container(session.container_id)
        assert info["HostConfig"]["Memory"] == 3 * 1024 ** 3
        with session.client() as client:
            assert client.run({"image": small_picture()}).outputs["output"].mime == "image/png"
    finally:
        session.stop()


@pytest.mark.docker
def test_docker_gpu_says_what_is_missing(prefs, shelf, addon_modules):
    prefs.default_runtime = "DOCKER_GPU"
    session = addon_modules("blender.sessions").open_session(shelf.get("upscale"))
    assert session.gpu
    with pytest.raises(addon_modules("core.runtimes.base").RuntimeFailed, match="(?i)nvidia"):
        session.start(timeout=60)
    assert session.state.value == "failed" and "NVIDIA" in session.reason


def test_remote_without_an_endpoint_is_a_clear_error(prefs, shelf, addon_modules):
    prefs.default_runtime = "REMOTE"
    with pytest.raises(addon_modules("core.runtimes.base").RuntimeFailed,
                       match="No remote endpoint is selected"):
        addon_modules("blender.sessions").open_session(shelf.get("upscale"))


def test_remote_endpoint_honours_online_access_and_carries_its_token(
        blender, prefs, shelf, addon_modules):
    prefs.default_runtime = "REMOTE"
    blender.ops.runway.endpoint_add()
    ep = prefs.endpoints[-1]
    ep.name, ep.kind, ep.url = "studio", "URL", "http://127.0.0.1:9"
    blender.ops.runway.token_set(endpoint="studio", token="secret-studio-token")
    try:
        session = addon_modules("blender.sessions").open_session(shelf.get("upscale"))
        assert type(session).__name__ == "RemoteSession"
        assert session.address == "http://127.0.0.1:9"
        assert "secret-studio-token" not in repr(session)
        assert session._token == "secret-studio-token"
        assert not blender.app.online_access  # the bpy module starts with it off
        with pytest.raises(addon_modules("core.runtimes.base").RuntimeFailed,
                           match="^Online access is off") as refused:
            session.start(timeout=5)
        assert refused.value.kind == addon_modules("core.errors").Kind.ONLINE_ACCESS_OFF
        assert session.state.value != "running"
    finally:
        blender.ops.runway.token_clear(endpoint="studio")


@pytest.fixture
def online(blender):
    """Online access switched on as a user does (Preferences > System > Network):
    bpy.app.online_access itself is read-only, the preference sets it. Off again after."""
    system = blender.context.preferences.system
    system.use_online_access = True
    assert blender.app.online_access
    yield blender
    system.use_online_access = False
    assert not blender.app.online_access


@pytest.mark.network
def test_with_online_access_on_a_remote_endpoint_is_reached(online, prefs, shelf, addon_modules,
                                                          tmp_path):
    """The allowed path: online access on, a remote endpoint (a real Runway SDK-style
    server on loopback) is reached with its token; switched off, the same endpoint is
    refused before a single request leaves."""
    from tests.servers import RunwayTestServer
    blender, sessions = online, addon_modules("blender.sessions")
    srv = RunwayTestServer(tmp_path / "srv", options={"weights_dir": str(tmp_path)}).wait_ready()
    prefs.default_runtime = "REMOTE"
    blender.ops.runway.endpoint_add()
    ep = prefs.endpoints[-1]
    ep.name, ep.kind, ep.url = "loopback", "URL", srv.url
    blender.ops.runway.token_set(endpoint="loopback", token="secret-loopback-token")
    try:
        session = sessions.open_session(shelf.get("upscale"))
        session.start(timeout=30)
        try:
            assert session.state.value == "running" and session.protocol.value == "runway"
            # The spec came from that server: its setup options.
            assert "weights_dir" in [f.name for f in session.model_spec.options]
        finally:
            session.stop()
        seen = srv.requests()
        assert seen and all(r["authorized"] for r in seen), seen  # the token went along
        blender.context.preferences.system.use_online_access = False
        again = sessions.open_session(shelf.get("upscale"))
        with pytest.raises(addon_modules("core.runtimes.base").RuntimeFailed,
                           match="^Online access is off"):
            again.start(timeout=5)
        assert srv.requests() == seen  # nothing was sent
    finally:
        blender.ops.runway.token_clear(endpoint="loopback")
        srv.stop()


def test_the_model_port_address_preference_reaches_docker_sessions(
        blender, prefs, shelf, addon_modules):
    """A Docker-host endpoint publishes model ports on loopback unless the preference
    names an address (tests/core/test_placement.py checks real containers)."""
    sessions, card = addon_modules("blender.sessions"), shelf.get("upscale")
    prefs.default_runtime = "REMOTE"
    blender.ops.runway.endpoint_add()
    ep = prefs.endpoints[-1]
    ep.name, ep.kind, ep.url = "gpu box", "DOCKER_HOST", "tcp://192.0.2.8:2376"
    session = sessions.open_session(card)
    assert session.remote and session.docker_host == "tcp://192.0.2.8:2376"
    assert session.publish_ip is None
    prefs.docker_publish_address = " 10.8.0.1 "
    assert sessions.open_session(card).publish_ip == "10.8.0.1"
