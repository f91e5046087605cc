"""Fixtures of the shelf tests: one real model server at a time (the machine has two cores)."""
import pytest

from runway_addon.core.errors import RunwayError
from runway_addon.core.runtimes.process import ProcessSession
from tests.helpers import ROOT


class Shelf:
    """The one running model server of a module; ``use(name)`` stops any other."""

    def __init__(self):
        self.name = None
        self.session = None
        self.client = None
        self.failed: dict[str, str] = {}

    def use(self, name: str):
        if name == self.name and self.client is not None:
            return self.client
        self.close()
        if name in self.failed:  # do not retry a start that failed for this model
            pytest.fail(self.failed[name], pytrace=False)
        session = ProcessSession(ROOT / "models" / name)  # default env root: shared with CI runs
        try:
            session.start()
        except RunwayError as e:
            self.failed[name] = f"{name} did not start: {e}\n{session.logs()[-4000:]}"
            pytest.fail(self.failed[name], pytrace=False)
        self.name, self.session, self.client = name, session, session.client()
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.session is not None:
            self.session.stop()
        self.name = self.session = self.client = None


@pytest.fixture(scope="module")
def shelf():
    s = Shelf()
    yield s
    s.close()
