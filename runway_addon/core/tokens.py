"""Where access tokens live: never in a .blend file (user preferences are a
.blend too), never in logs.

A token comes from an environment variable when one is set (pipelines, CI),
else from a JSON file readable only by the user, in the extension's user
folder. In the file, tokens are keyed by the endpoint's stable id (so a rename
keeps the token, a removal forgets it); the environment variable follows the
endpoint's name (``RUNWAY_TOKEN_<NAME>``) and, for Replicate, Replicate's own
``REPLICATE_API_TOKEN``. The variable wins over the file, and ``source_var``
says which one is in use.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Optional

# Well-known variables that services' own tools use too.
WELL_KNOWN_ENV = {"replicate": "REPLICATE_API_TOKEN"}


def env_var_for(endpoint: str) -> str:
    """RUNWAY_TOKEN_<NAME>, with NAME upper-cased and non-alphanumerics as '_'."""
    return "RUNWAY_TOKEN_" + re.sub(r"[^A-Za-z0-9]", "_", endpoint).upper()


def env_vars(name: str, kind: str = "") -> list[str]:
    """The variables that give an endpoint's token, first found wins:
    ``RUNWAY_TOKEN_<NAME>``, then ``REPLICATE_API_TOKEN`` for a Replicate endpoint
    (by kind, or by the name "replicate")."""
    out = [env_var_for(name)] if name else []
    well_known = WELL_KNOWN_ENV.get(name.lower()) or \
        (WELL_KNOWN_ENV["replicate"] if kind.upper() == "REPLICATE" else None)
    if well_known and well_known not in out:
        out.append(well_known)
    return out


def mask(token: Optional[str]) -> str:
    """What may be shown of a token: its last four characters."""
    if not token:
        return ""
    return "\u2022" * 8 + token[-4:] if len(token) > 8 else "\u2022" * 8


class TokenStore:
    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError):
            # A damaged file (nested too deeply too) must not take every other setting down.
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a private temporary file, then replace: never a half-written
        # file, never a moment where the token is world-readable.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-")
        try:
            os.chmod(tmp, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @staticmethod
    def _vars(endpoint: str, names) -> list:
        return list(names) if names is not None else [env_var_for(endpoint),
                                                      WELL_KNOWN_ENV.get(endpoint.lower())]

    def source_var(self, endpoint: str, env_names=None) -> str:
        """The environment variable that gives this token now ('' when none is set)."""
        for var in self._vars(endpoint, env_names):
            if var and os.environ.get(var):
                return var
        return ""

    def get(self, endpoint: str, env_names=None) -> Optional[str]:
        """The token of ``endpoint`` (a stable id, or a name): from the first set
        variable of ``env_names`` (default: the ones named after ``endpoint``),
        else from the file."""
        var = self.source_var(endpoint, env_names)
        if var:
            return os.environ[var]
        return self._read().get(endpoint) or None

    def source(self, endpoint: str, env_names=None) -> str:
        """Where the token would come from: 'environment', 'file' or ''."""
        if self.source_var(endpoint, env_names):
            return "environment"
        return "file" if self.stored(endpoint) else ""

    def stored(self, endpoint: str) -> bool:
        """Whether the file holds a token for ``endpoint`` (the environment aside)."""
        return bool(self._read().get(endpoint))

    def move(self, old: str, new: str) -> bool:
        """Re-key a stored token (an endpoint that was keyed by name gets its id)."""
        data = self._read()
        if old not in data or old == new:
            return False
        data.setdefault(new, data[old])
        del data[old]
        self._write(data)
        return True

    def set(self, endpoint: str, token: str) -> None:
        data = self._read()
        data[endpoint] = token.strip()
        self._write(data)

    def clear(self, endpoint: str) -> None:
        data = self._read()
        if data.pop(endpoint, None) is not None:
            self._write(data)
