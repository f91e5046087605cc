import os
import stat

from runway_addon.core import tokens


def test_store_roundtrip_private_file(tmp_path, monkeypatch):
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    store = tokens.TokenStore(tmp_path / "sub" / "tokens.json")
    assert store.get("a") is None and store.source("a") == ""
    store.set("a", " abc123 ")
    assert store.get("a") == "abc123" and store.source("a") == "file"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    store.clear("a")
    assert store.get("a") is None
    assert not list((tmp_path / "sub").glob(".tokens-*")), "temporary files left behind"


def test_environment_wins_and_is_named_predictably(tmp_path, monkeypatch):
    store = tokens.TokenStore(tmp_path / "t.json")
    store.set("My Server", "from-file")
    monkeypatch.setenv("RUNWAY_TOKEN_MY_SERVER", "from-env")
    assert tokens.env_var_for("My Server") == "RUNWAY_TOKEN_MY_SERVER"
    assert store.get("My Server") == "from-env" and store.source("My Server") == "environment"
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_x")
    assert store.get("replicate") == "r8_x"


def test_damaged_file_reads_as_empty(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("{not json")
    store = tokens.TokenStore(path)
    assert store.get("a") is None
    store.set("a", "b")  # and a new write repairs it
    assert store.get("a") == "b"


def test_mask_shows_only_the_tail():
    assert tokens.mask("r8_abcdefghijkl").endswith("ijkl")
    assert "abcd" not in tokens.mask("r8_abcdefghijkl")
    assert tokens.mask("") == ""
