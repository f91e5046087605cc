"""Preferences and tokens in real Blender (bpy 5.0, in this process)."""
import os
import stat
from pathlib import Path

import pytest

from tests.helpers import ADDON_PKG

pytestmark = pytest.mark.blender

SECRET = "r8_TESTtoken_9f8e7d6c5b4a"


def prefs(bpy):
    return bpy.context.preferences.addons[ADDON_PKG].preferences


def test_preferences_exist_under_the_package_name(blender):
    p = prefs(blender)
    assert type(p).bl_idname == ADDON_PKG
    assert p.default_runtime == "LOCAL_PROCESS"
    assert {i.identifier for i in p.bl_rna.properties["default_runtime"].enum_items} == {
        "LOCAL_PROCESS", "DOCKER_CPU", "DOCKER_GPU", "REMOTE"}
    assert p.memory_limit_gb == 8
    # The cache defaults to the extension's user folder, which Blender creates.
    assert Path(p.cache_path()).is_dir()
    assert "extensions" in p.cache_path()


def test_endpoints_add_and_remove(blender):
    p = prefs(blender)
    n = len(p.endpoints)
    assert blender.ops.runway.endpoint_add() == {"FINISHED"}
    assert blender.ops.runway.endpoint_add() == {"FINISHED"}
    names = [e.name for e in p.endpoints]
    assert len(names) == n + 2 and len(set(names)) == len(names)
    assert blender.ops.runway.endpoint_remove(index=len(p.endpoints) - 1) == {"FINISHED"}
    assert len(p.endpoints) == n + 1
    blender.ops.runway.endpoint_remove(index=len(p.endpoints) - 1)


def test_token_never_lands_in_a_blend_file(blender, tmp_path):
    p = prefs(blender)
    blender.ops.runway.endpoint_add()
    ep = p.endpoints[-1]
    ep.name, ep.kind, ep.url = "replicate", "REPLICATE", "owner/model"
    assert blender.ops.runway.token_set(endpoint="replicate", token=SECRET) == {"FINISHED"}

    mod = __import__(ADDON_PKG + ".blender.preferences", fromlist=["_"])
    store = mod.token_store()
    assert mod.endpoint_token(ep) == SECRET
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600, oct(mode)

    blend = tmp_path / "scene.blend"
    blender.ops.wm.save_as_mainfile(filepath=str(blend))
    blender.ops.wm.save_userpref()
    userpref = Path(os.environ["BLENDER_USER_RESOURCES"]) / "config" / "userpref.blend"
    assert blend.exists() and userpref.exists()
    for f in (blend, userpref):
        assert SECRET.encode() not in f.read_bytes(), f
    # The endpoint itself (not its token) is a preference and was saved.
    assert b"owner/model" in userpref.read_bytes()

    assert blender.ops.runway.token_clear(endpoint="replicate") == {"FINISHED"}
    assert mod.endpoint_token(ep) is None
    blender.ops.runway.endpoint_remove(index=len(p.endpoints) - 1)


def test_empty_token_is_refused(blender):
    with pytest.raises(RuntimeError, match="empty"):
        blender.ops.runway.token_set(endpoint="x", token="   ")


def prefs_mod():
    return __import__(ADDON_PKG + ".blender.preferences", fromlist=["_"])


@pytest.fixture
def endpoint(blender, monkeypatch):
    for var in ("REPLICATE_API_TOKEN", "RUNWAY_TOKEN_RENDER_BOX", "RUNWAY_TOKEN_FARM",
                "RUNWAY_TOKEN_MY_REPLICATE"):
        monkeypatch.delenv(var, raising=False)
    p = prefs(blender)
    blender.ops.runway.endpoint_add()
    ep = p.endpoints[-1]
    yield ep
    while len(p.endpoints):
        blender.ops.runway.endpoint_remove(index=len(p.endpoints) - 1)


def test_a_token_is_kept_across_a_rename_and_forgotten_on_removal(blender, endpoint):
    mod = prefs_mod()
    ep = endpoint
    ep.name, ep.kind, ep.url = "Render Box", "URL", "https://gpu.example.com"
    assert ep.uid
    assert blender.ops.runway.token_set(endpoint=ep.uid, token=SECRET) == {"FINISHED"}
    ep.name = "Farm"  # a rename keeps the token
    assert mod.endpoint_token(ep) == SECRET
    store = mod.token_store()
    assert store.stored(ep.uid)
    uid = ep.uid
    blender.ops.runway.endpoint_remove(index=len(prefs(blender).endpoints) - 1)
    assert not store.stored(uid) and SECRET not in store.path.read_text()
    # A new endpoint with the old name does not inherit it.
    blender.ops.runway.endpoint_add()
    again = prefs(blender).endpoints[-1]
    again.name = "Farm"
    assert mod.endpoint_token(again) is None


def test_an_old_endpoint_keyed_by_name_gets_an_id_and_keeps_its_token(blender, endpoint):
    mod = prefs_mod()
    ep = endpoint
    ep.name, ep.uid = "Farm", ""  # saved before ids existed
    mod.token_store().set("Farm", SECRET)
    assert mod.endpoint_token(ep) == SECRET
    assert blender.ops.runway.token_set(endpoint="Farm", token=SECRET + "2") == {"FINISHED"}
    assert ep.uid and mod.endpoint_token(ep) == SECRET + "2"
    assert not mod.token_store().stored("Farm")


def test_the_token_source_is_named_right_with_replicate_api_token(blender, endpoint,
                                                                   monkeypatch):
    mod = prefs_mod()
    ep = endpoint
    ep.name, ep.kind, ep.url = "My Replicate", "REPLICATE", "owner/model"
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_fromtheenvironment")
    store = mod.token_store()
    assert store.source_var(mod.endpoint_key(ep), mod.endpoint_env_vars(ep)) == \
        "REPLICATE_API_TOKEN"
    assert mod.endpoint_token(ep) == "r8_fromtheenvironment"
    # Set Token says the variable still wins instead of appearing to work.
    reports = []
    op = blender.ops.runway.token_set
    result = op(endpoint=ep.uid, token=SECRET)
    assert result == {"FINISHED"} and mod.endpoint_token(ep) == "r8_fromtheenvironment"
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    assert mod.endpoint_token(ep) == SECRET
    del reports


def test_a_remote_docker_engine_refuses_https_and_takes_no_token(blender, endpoint):
    mod = prefs_mod()
    ep = endpoint
    ep.kind, ep.url = "DOCKER_HOST", "https://docker.example.com:2376"
    assert "tcp://" in mod.endpoint_problem(ep.kind, ep.url)
    assert mod.endpoint_problem("DOCKER_HOST", "tcp://docker.example.com:2376") == ""
    assert mod.endpoint_problem("URL", "tcp://x") != ""
    assert mod.endpoint_problem("REPLICATE", "owner/name:abc123") == ""
    with pytest.raises(RuntimeError, match="no token"):
        blender.ops.runway.token_set(endpoint=ep.uid, token=SECRET)
    assert mod.endpoint_token(ep) is None
    ok, text = mod.check_endpoint(ep.kind, ep.url)
    assert not ok and "tcp://" in text


def _wait_result(mod, ep, timeout=30):
    from tests.helpers import wait_until
    if not wait_until(lambda: mod.connection_result(ep).get("state") == "done", timeout):
        raise AssertionError(f"connection test still running: {mod.connection_result(ep)}")
    return mod.connection_result(ep)


@pytest.mark.network
def test_test_connection_says_what_it_found_without_blocking(blender, endpoint, tmp_path):
    import socket
    from tests.servers import RunwayTestServer
    mod = prefs_mod()
    # A port that takes the connection and never answers: an operator that waited for
    # the check would return with it done; it returns with the check still running.
    silent = socket.create_server(("127.0.0.1", 0))
    endpoint.kind, endpoint.url = "URL", f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        assert blender.ops.runway.endpoint_test() == {"FINISHED"}
        assert mod.connection_result(endpoint)["state"] == "running"
        assert blender.ops.runway.endpoint_test() == {"CANCELLED"}  # one check at a time
    finally:
        silent.close()  # resets the waiting connection: the check ends, failed
    r = _wait_result(mod, endpoint)
    assert not r["ok"] and r["text"]
    srv = RunwayTestServer(tmp_path / "srv", options={"weights_dir": str(tmp_path)}).wait_ready()
    try:
        endpoint.url = srv.url
        assert blender.ops.runway.endpoint_test() == {"FINISHED"}
        r = _wait_result(mod, endpoint)
        assert r["ok"] and "Runway Model SDK" in r["text"], r
    finally:
        srv.stop()
    assert blender.ops.runway.endpoint_test() == {"FINISHED"}  # now nothing answers there
    r = _wait_result(mod, endpoint)
    assert not r["ok"] and r["text"]


def test_the_preferences_draw_the_endpoint_as_it_is(blender, endpoint, monkeypatch):
    from tests.helpers import Layout
    p = prefs(blender)
    mod = prefs_mod()

    class Fake:
        layout = Layout()

        def __getattr__(self, name):
            return getattr(p, name)

    def draw():
        fake = Fake()
        fake.layout = Layout()
        type(p).draw(fake, blender.context)
        return [t for _, t, _ in fake.layout.log]

    endpoint.name, endpoint.kind, endpoint.url = "Docker", "DOCKER_HOST", "https://x:2376"
    p.active_endpoint = len(p.endpoints) - 1
    p.default_runtime = "REMOTE"
    try:
        shown = draw()
        assert any("tcp://" in t for t in shown) and "Set Token" not in shown
        assert any("Remote GPU uses the selected endpoint: Docker" in t for t in shown)
        endpoint.kind, endpoint.url = "REPLICATE", "owner/model"
        monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_fromtheenvironment")
        shown = draw()
        assert "Token from the environment variable REPLICATE_API_TOKEN" in shown
        assert "Set Token" in shown
        mod._connection_tests[mod.endpoint_key(endpoint)] = {"state": "done", "ok": False,
                                                             "text": "refused"}
        shown = draw()
        assert "Not connected" in shown and "refused" in shown
    finally:
        p.default_runtime = "LOCAL_PROCESS"
        mod._connection_tests.clear()


def test_the_docker_engine_address_has_one_place_each(blender, endpoint):
    """This computer's engine in the Local Docker engine field (a socket); a remote
    engine only as a Remote Docker engine endpoint, with its port setting there."""
    from tests.helpers import Layout
    p = prefs(blender)
    mod = prefs_mod()
    sessions = __import__(ADDON_PKG + ".blender.sessions", fromlist=["_"])
    base = __import__(ADDON_PKG + ".core.runtimes.base", fromlist=["_"])

    def drawn():
        class Fake:
            def __getattr__(self, name):
                return getattr(p, name)
        fake = Fake()
        fake.layout = Layout()
        type(p).draw(fake, blender.context)
        return fake.layout.log

    address_fields = lambda log: [a for kind, _, a in log if kind == "prop" and a and  # noqa: E731
                                  a[0] in ("docker_host", "url")]
    p.active_endpoint = len(p.endpoints) - 1
    endpoint.kind, endpoint.url = "URL", "http://127.0.0.1:5000"
    log = drawn()
    assert address_fields(log) == [("docker_host",), ("url",)]
    assert ("docker_publish_address",) not in [a for k, _, a in log if k == "prop"]
    endpoint.kind, endpoint.url = "DOCKER_HOST", "tcp://render-box:2376"
    assert ("docker_publish_address",) in [a for k, _, a in drawn() if k == "prop"]

    assert mod.local_docker_problem("") == ""
    assert mod.local_docker_problem("unix:///run/user/1000/docker.sock") == ""
    assert mod.local_docker_problem("tcp://localhost:2375") == ""  # Docker Desktop's
    assert mod.local_docker_problem("ssh://farm") != ""
    p.docker_host = "tcp://render-box:2376"
    try:
        assert any("Remote endpoint" in t for _, t, _ in drawn())
        with pytest.raises(base.RuntimeFailed, match="Local Docker engine") as e:
            sessions.placement("DOCKER_CPU")
        assert "Remote endpoint" in e.value.hint
        assert sessions.placement("LOCAL_PROCESS").runtime == "LOCAL_PROCESS"
    finally:
        p.docker_host = ""


def test_core_errors_get_blender_words_only_in_the_blender_layer(blender):
    """Core hints are neutral; the report names the Blender control for the error's kind."""
    import importlib


    reports = importlib.import_module(ADDON_PKG + ".blender.reports")
    errors = importlib.import_module(ADDON_PKG + ".core.errors")
    remote = importlib.import_module(ADDON_PKG + ".core.runtimes.remote")
    replicate = importlib.import_module(ADDON_PKG + ".core.protocols.replicate")

    with pytest.raises(errors.RunwayError) as offline:
        remote.check_online_access("https://models.example.com", False)
    assert offline.value.kind == errors.Kind.ONLINE_ACCESS_OFF
    assert "Preferences" not in str(offline.value)
    words = reports.describe(offline.value)
    assert words.startswith(offline.value.message)
    assert "Allow Online Access" in words and "Preferences > System > Network" in words

    with pytest.raises(errors.AuthError) as missing:
        replicate.ReplicateClient("owner/model", token="").run({})
    assert missing.value.kind == errors.Kind.TOKEN_MISSING
    assert "Set Token" not in str(missing.value)
    assert "Set Token" in reports.hint_for(missing.value)
    assert "REPLICATE_API_TOKEN" in reports.hint_for(missing.value)

    # An error of no known kind keeps exactly the core's words.
    plain = errors.RunwayError("The model failed.", hint="See its logs.")
    assert reports.describe(plain) == "The model failed. See its logs."
    assert reports.describe(OSError("disk full")) == "disk full"
