"""Adding your own model: a model folder, a running server URL, a Replicate model;
each gives a pre-filled, editable card that the catalog loads beside the shelf."""
import json
import shutil

import pytest

from runway_addon.core import catalog, user_models
from runway_addon.core.catalog import Catalog
from tests.helpers import ROOT
from tests.servers import REPLICATE_TOKEN, ReplicateStandIn, RunwayTestServer

COG_MODELS = ROOT / "tests" / "model_servers" / "cog"
RUNTIME_MODELS = ROOT / "tests" / "model_servers" / "process"


def test_a_cog_folder_with_its_schema_becomes_a_card(tmp_path):
    folder = tmp_path / "elsewhere" / "my_edges"
    shutil.copytree(COG_MODELS / "image", folder)
    card, spec = user_models.card_from_folder(folder, start_if_needed=False)
    assert card["name"] == "my_edges" and card["title"] == "My edges"
    assert card["source"]["kind"] == "folder" and card["source"]["value"] == str(folder)
    assert card["task"] == "transform" and card["characteristics"]["input_types"][0] == "image"
    assert not card["licence"]["commercial_use"]["allowed"]  # never assumed
    card["title"] = "Edge Finder (mine)"  # editable before saving
    users = tmp_path / "user" / "models"
    path = user_models.save_user_card(users, card, spec, taken={"upscale"})
    assert json.loads((path.parent / "spec.json").read_text())["protocol"] == "cog"

    cat = Catalog.load([catalog.builtin_models_dir(), users])
    assert not cat.errors, cat.errors
    mine = cat.get("my_edges")
    assert mine.is_user_model and mine.title == "Edge Finder (mine)"
    assert mine.folder == str(folder) and mine.card_dir == str(path.parent)
    assert mine.runnable  # the engine runs card.folder, the model's own folder
    assert catalog.load_spec(mine).command().inputs == spec.command().inputs
    assert [c.name for c in cat.search("mine")] == ["my_edges"]
    # A second add of the same folder gets its own name, never overwriting the first.
    again = user_models.save_user_card(users, card, spec)
    assert again.parent.name == "my_edges-2"
    user_models.edit_user_card(again, title="Second copy", keywords=["edges"])
    assert Catalog.load([users]).get("my_edges-2").title == "Second copy"
    with pytest.raises(catalog.CatalogError, match="task"):
        user_models.edit_user_card(again, task="summon")
    user_models.remove_user_card(users, "my_edges-2")
    assert folder.is_dir() and not again.parent.exists()  # the model's folder is untouched


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(user_models.UserModelError, match="no cog.yaml"):
        user_models.card_from_folder(tmp_path)
    (tmp_path / "runway.yml").write_text("entrypoint: runway_model.py\n")
    with pytest.raises(user_models.UserModelError, match="Runway Model SDK"):
        user_models.card_from_folder(tmp_path)


def test_a_broken_user_card_is_reported_with_file_and_field(tmp_path):
    users = tmp_path / "models"
    (users / "bad").mkdir(parents=True)
    (users / "bad" / "card.json").write_text(json.dumps({"name": "bad", "title": "Bad",
                                                         "task": "identify"}))
    cat = Catalog.load([catalog.builtin_models_dir(), users])
    assert len(cat.cards) >= 7 and len(cat.errors) == 1
    msg = str(cat.errors[0])
    assert "bad/card.json" in msg and "overview: Field required" in msg


@pytest.mark.slow
def test_a_folder_without_a_schema_is_inspected_in_its_environment(tmp_path):
    folder = tmp_path / "identity_copy"
    shutil.copytree(RUNTIME_MODELS / "identity", folder, ignore=shutil.ignore_patterns(
        "card.json", ".cog"))
    card, spec = user_models.card_from_folder(folder, timeout=300)  # the shared env cache
    assert card["task"] == "transform"
    assert [f.name for f in spec.command().inputs][:1] == ["image"]
    # Kept where the Cog server looks for it, as `cog build` would, and the same schema.
    written = json.loads((folder / ".cog" / "openapi_schema.json").read_text())
    shipped = json.loads((RUNTIME_MODELS / "identity" / ".cog" / "openapi_schema.json").read_text())
    assert written["components"]["schemas"]["Input"] == shipped["components"]["schemas"]["Input"]


@pytest.mark.network
def test_a_running_cog_server_url(cog_servers, tmp_path):
    server = cog_servers.get("image")
    card, spec = user_models.card_from_url(server.url)
    assert card["source"] == {**card["source"], "kind": "url", "value": server.url,
                              "protocol": "cog"}
    path = user_models.save_user_card(tmp_path, card, spec)
    mine = Catalog.load([tmp_path]).cards[0]
    assert mine.runnable and mine.folder == mine.card_dir == str(path.parent)
    assert catalog.load_spec(mine) == spec  # offline: from the saved spec


@pytest.mark.network
def test_a_running_runway_sdk_server_url(tmp_path):
    srv = RunwayTestServer(tmp_path / "srv", options={"weights_dir": str(tmp_path)}).wait_ready()
    try:
        card, spec = user_models.card_from_url(srv.url)
    finally:
        srv.stop()
    assert card["source"]["protocol"] == "runway" and spec.options
    user_models.save_user_card(tmp_path / "models", card, spec)
    assert catalog.load_spec(Catalog.load([tmp_path / "models"]).cards[0]) == spec


@pytest.mark.network
def test_a_replicate_model_from_the_stand_in(tmp_path):
    stand_in = ReplicateStandIn()
    try:
        card, spec = user_models.card_from_replicate("test/invert", token=REPLICATE_TOKEN,
                                                     base_url=stand_in.url)
    finally:
        stand_in.stop()
    assert card["name"] == "test-invert" and card["source"]["kind"] == "replicate"
    assert card["publishers"][0]["url"] == "https://replicate.com/test/invert"
    user_models.save_user_card(tmp_path, card, spec)
    assert Catalog.load([tmp_path]).get("test-invert").runnable


def test_bad_url_is_refused():
    with pytest.raises(user_models.UserModelError, match="http"):
        user_models.card_from_url("ftp://example.com")


# ----------------------------------------------------------------------------- Docker images

INVERT = "runway-test/invert:latest"  # the Docker runtime tests' image (built or reused)
NO_LABEL = "runway-test/invert-nolabel:latest"


@pytest.fixture(scope="module")
def invert_images():
    """The invert image (with the schema label, as buildtools.images writes it, like
    cog build) and a copy whose label is empty, so the add-on must ask the model."""
    import io

    from buildtools import images as build
    from tests.helpers import docker_engine

    build.build_model_image(ROOT / "tests" / "model_servers" / "docker" / "invert", INVERT)
    client = docker_engine(30)
    try:
        dockerfile = f'FROM {INVERT}\nLABEL {user_models.COG_SCHEMA_LABEL}=""\n'
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=NO_LABEL, rm=True)
        yield client
    finally:
        client.close()


@pytest.mark.docker
def test_a_docker_image_with_the_schema_label(invert_images, tmp_path):
    labels = invert_images.images.get(INVERT).labels
    assert labels[user_models.COG_SCHEMA_LABEL]  # the spec is read, nothing starts
    card, spec = user_models.card_from_image(INVERT)
    assert card["name"] == "invert" and card["title"] == "Invert"
    assert card["source"] == {**card["source"], "kind": "image", "value": INVERT,
                              "protocol": "cog"}
    assert card["task"] == "transform" and [f.name for f in spec.command().inputs] == \
        ["image", "delay"]
    card["title"] = "Negative"  # editable like the other sources
    path = user_models.save_user_card(tmp_path, card, spec)
    mine = Catalog.load([tmp_path]).get("invert")
    assert mine.title == "Negative" and mine.runnable
    assert catalog.load_spec(mine) == spec  # the Run panel's widgets, offline


@pytest.mark.docker
@pytest.mark.network
def test_a_docker_image_without_the_label_is_started_once_and_asked(invert_images):
    import uuid

    from runway_addon.core.runtimes import docker as rt

    owner = "test-" + uuid.uuid4().hex[:12]
    card, spec = user_models.card_from_image(NO_LABEL, owner=owner)
    labelled = user_models.card_from_image(INVERT)[1]
    assert card["name"] == "invert-nolabel" and card["source"]["kind"] == "image"
    assert spec.command().inputs == labelled.command().inputs
    assert spec.command().outputs == labelled.command().outputs
    # Asked, then stopped: nothing of that start is left running.
    assert not invert_images.containers.list(
        all=True, filters={"label": f"{rt.OWNER_LABEL}={owner}"})


@pytest.mark.docker
def test_a_missing_or_misnamed_image_is_refused(invert_images):
    with pytest.raises(user_models.UserModelError, match="not on this machine"):
        user_models.card_from_image("runway-test/no-such-image:latest", pull=False)
    with pytest.raises(user_models.UserModelError, match="not a Docker image name"):
        user_models.card_from_image("not an image")
