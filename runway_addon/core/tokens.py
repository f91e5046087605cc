"""Where access tokens live: never in a .blend file (user preferences are a
.blend too), never in logs.

A token comes from an environment variable when one is set (pipelines, CI),
else from a JSON file readable only by the user, in the extension's user
folder. Tokens are keyed by endpoint name.
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
        except (OSError, ValueError):
            # A damaged file must not take every other setting down with it.
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

    def get(self, endpoint: str) -> Optional[str]:
        for var in (env_var_for(endpoint), WELL_KNOWN_ENV.get(endpoint.lower())):
            if var and os.environ.get(var):
                return os.environ[var]
        return self._read().get(endpoint) or None

    def source(self, endpoint: str) -> str:
        """Where the token would come from: 'environment', 'file' or ''."""
        for var in (env_var_for(endpoint), WELL_KNOWN_ENV.get(endpoint.lower())):
            if var and os.environ.get(var):
                return "environment"
        return "file" if endpoint in self._read() else ""

    def set(self, endpoint: str, token: str) -> None:
        data = self._read()
        data[endpoint] = token.strip()
        self._write(data)

    def clear(self, endpoint: str) -> None:
        data = self._read()
        if data.pop(endpoint, None) is not None:
            self._write(data)
