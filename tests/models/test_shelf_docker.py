"""A shelf model built into a Docker image offline (`build.py models docker`) runs
in the Docker runtime and gives the same picture as the local-process runtime."""
import numpy as np
import pytest

from buildtools import images
from runway_addon.core.runtimes.docker import DockerSession
from tests.helpers import ROOT, image, photo_512, to01

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def style_image_tag():
    folder = ROOT / "models" / "style-transfer"
    result = images.build_model_image(folder, images.default_tag(folder))
    return result["tag"]


def test_style_transfer_in_docker_matches_the_local_process(style_image_tag, shelf):
    session = DockerSession("style-transfer", style_image_tag, mem_limit=2 * 1024 ** 3)
    try:
        session.start(timeout=180)
        with session.client() as client:
            in_docker = to01(image(client.run({"image": photo_512(), "style": 19})
                                   .outputs["output"]))
        container = session.container_id
    finally:
        session.stop()
    assert in_docker.shape == (512, 512, 3)
    assert np.abs(in_docker - to01(photo_512())).mean() > 0.05
    local = shelf.use("style-transfer")
    as_process = to01(image(local.run({"image": photo_512(), "style": 19}).outputs["output"]))
    # Same wheels, same weights, same input: the same picture (within PNG rounding).
    assert np.abs(in_docker - as_process).max() < 2 / 255
    import docker
    assert not docker.from_env().containers.list(all=True, filters={"id": container})
