"""Fixtures of the core tests (plain Python, real servers)."""
import pytest

from tests.servers import ReplicateStandIn


@pytest.fixture(scope="module")
def stand_in():
    """The Replicate stand-in (tests/servers/replicate_server.py), one per module."""
    server = ReplicateStandIn()
    yield server
    server.stop()
