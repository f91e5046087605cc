"""Workspaces: named, ordered collections of models (by project or theme), kept in
one JSON file in the extension's user folder so they outlive any .blend.

Every change is a read-modify-write under a lock: the file is re-read (another
Blender may have written it a moment ago), changed, written to a temporary
file beside it and put in place with ``os.replace`` (atomic), so two Blender
processes writing at once never lose each other's change or leave a torn file.

A file that cannot be parsed is never silently emptied: it is renamed aside
(``workspaces.json.broken-<time>``), reported once (``WorkspaceStore.problem``)
and a fresh file is started.

The file::

    {"format": 1, "workspaces": [{"id": "3f2a...", "name": "Lookdev", "models": ["upscale", ...]}]}
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from .errors import RunwayError

FORMAT = 1
FILE_NAME = "workspaces.json"


class WorkspaceError(RunwayError):
    """A workspace operation that cannot be done (unknown id, empty name, ...)."""


@dataclass
class Workspace:
    id: str
    name: str
    models: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "models": list(self.models)}


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads: each call opens its own
    file descriptor) on a lock file beside the data."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as f:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt
            f.seek(0)
            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    time.sleep(0.05)
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _write_json(path: Path, data) -> None:
    """Write to a temporary file beside ``path``, then put it in place (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _set_aside(path: Path, exc: Exception, what: str) -> str:
    """Rename a broken file aside (never overwrite it); the problem, in words."""
    aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
                           f"-{uuid.uuid4().hex[:6]}")
    try:
        os.replace(path, aside)
        where = f"it was kept as {aside}"
    except OSError as e:
        where = f"it could not be moved aside ({e.strerror})"
    return f"The {what} file {path} could not be read ({exc}); {where} and a new, empty " \
           f"one was started."


def _parse(data) -> list[Workspace]:
    """Workspaces from parsed JSON; ValueError naming what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("workspaces"), list):
        raise ValueError("not an object with a 'workspaces' list")
    out, seen = [], set()
    for n, w in enumerate(data["workspaces"]):
        if not isinstance(w, dict) or not isinstance(w.get("id"), str) or \
                not isinstance(w.get("name"), str):
            raise ValueError(f"workspaces[{n}]: needs a string 'id' and 'name'")
        models = w.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ValueError(f"workspaces[{n}].models: must be a list of model names")
        if w["id"] in seen:
            raise ValueError(f"workspaces[{n}].id: {w['id']!r} appears twice")
        seen.add(w["id"])
        out.append(Workspace(w["id"], w["name"], list(dict.fromkeys(models))))
    return out


class WorkspaceStore:
    """The workspaces of one user folder. Reads are cheap (cached by the file's
    modification time and size); every change goes through ``_update``."""

    def __init__(self, folder: os.PathLike | str):
        self.path = Path(folder) / FILE_NAME
        self.lock_path = Path(folder) / (FILE_NAME + ".lock")
        self.problem: str = ""  # the last broken file, in words (shown once, then kept)
        self._cache: Optional[tuple] = None  # (stat key, workspaces)

    # ------------------------------------------------------------ reading

    def _stat_key(self):
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read_unlocked(self, fresh: bool = False) -> list[Workspace]:
        key = self._stat_key()
        if key is None:
            return []
        if not fresh and self._cache and self._cache[0] == key:
            return [Workspace(w.id, w.name, list(w.models)) for w in self._cache[1]]
        try:
            raw = self.path.read_bytes()
            workspaces = _parse(json.loads(raw.decode("utf-8")))
        except FileNotFoundError:
            return []
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # nested too deeply too
            self._set_aside(e)
            return []
        self._cache = (key, workspaces)
        return [Workspace(w.id, w.name, list(w.models)) for w in workspaces]

    def _set_aside(self, exc: Exception) -> None:
        self.problem = _set_aside(self.path, exc, "workspace")
        self._cache = None

    def load(self) -> list[Workspace]:
        """All workspaces, in their order. A broken file is set aside (see
        ``problem``) under the lock, so no other writer races the rename."""
        key = self._stat_key()
        if key is not None and self._cache and self._cache[0] == key:
            return [Workspace(w.id, w.name, list(w.models)) for w in self._cache[1]]
        with _locked(self.lock_path):
            return self._read_unlocked()

    def get(self, workspace_id: str) -> Optional[Workspace]:
        return next((w for w in self.load() if w.id == workspace_id), None)

    # ------------------------------------------------------------ writing

    def _write_unlocked(self, workspaces: list[Workspace]) -> None:
        _write_json(self.path, {"format": FORMAT,
                                "workspaces": [w.to_json() for w in workspaces]})
        self._cache = None

    def _update(self, change: Callable[[list[Workspace]], object]):
        """Re-read, apply ``change`` (which edits the list in place and may return
        a value), write atomically; all under the lock."""
        with _locked(self.lock_path):
            workspaces = self._read_unlocked(fresh=True)  # never a cached copy here
            result = change(workspaces)
            self._write_unlocked(workspaces)
            return result

    @staticmethod
    def _find(workspaces: list[Workspace], workspace_id: str) -> Workspace:
        for w in workspaces:
            if w.id == workspace_id:
                return w
        raise WorkspaceError("That workspace no longer exists.",
                             hint="Another Blender may have deleted it; choose another one.")

    @staticmethod
    def _clean_name(name: str) -> str:
        name = " ".join(str(name).split())
        if not name:
            raise WorkspaceError("A workspace needs a name.")
        return name[:64]

    def create(self, name: str, models: list[str] = ()) -> Workspace:
        name = self._clean_name(name)

        def change(ws):
            taken = {w.name for w in ws}
            final, n = name, 2
            while final in taken:
                final, n = f"{name} {n}", n + 1
            w = Workspace(uuid.uuid4().hex, final, list(dict.fromkeys(models)))
            ws.append(w)
            return w
        return self._update(change)

    def rename(self, workspace_id: str, name: str) -> None:
        name = self._clean_name(name)
        self._update(lambda ws: setattr(self._find(ws, workspace_id), "name", name))

    def delete(self, workspace_id: str) -> None:
        def change(ws):
            ws.remove(self._find(ws, workspace_id))
        self._update(change)

    def add_model(self, workspace_id: str, model: str) -> bool:
        """Add ``model`` at the end; False when it was there already."""
        def change(ws):
            w = self._find(ws, workspace_id)
            if model in w.models:
                return False
            w.models.append(model)
            return True
        return self._update(change)

    def remove_model(self, workspace_id: str, model: str) -> bool:
        def change(ws):
            w = self._find(ws, workspace_id)
            if model not in w.models:
                return False
            w.models.remove(model)
            return True
        return self._update(change)

    def move_model(self, workspace_id: str, model: str, offset: int) -> int:
        """Move ``model`` by ``offset`` places (negative: up); its new position."""
        def change(ws):
            w = self._find(ws, workspace_id)
            if model not in w.models:
                raise WorkspaceError(f"{model!r} is not in the workspace {w.name!r}.")
            i = w.models.index(model)
            j = max(0, min(len(w.models) - 1, i + offset))
            w.models.insert(j, w.models.pop(i))
            return j
        return self._update(change)

    def set_models(self, workspace_id: str, models: list[str]) -> None:
        """Replace the models (and their order)."""
        self._update(lambda ws: setattr(self._find(ws, workspace_id), "models",
                                        list(dict.fromkeys(models))))


RECENT_FILE = "recent.json"
RECENT_KEPT = 50  # models remembered; the directory's filter shows the latest few


class RecentStore:
    """When each model was last run, in ``recent.json`` beside the workspaces (all
    Blenders of this user share it): ``{"format": 1, "models": {name: unix time}}``.
    Written like the workspaces: re-read and replaced atomically under the lock;
    a broken file is kept aside and reported (``problem``)."""

    def __init__(self, folder: os.PathLike | str):
        self.path = Path(folder) / RECENT_FILE
        self.lock_path = Path(folder) / (RECENT_FILE + ".lock")
        self.problem = ""
        self._cache: Optional[tuple] = None

    def _read_unlocked(self) -> dict[str, float]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._cache and self._cache[0] == key:
            return dict(self._cache[1])
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
            models = data.get("models") if isinstance(data, dict) else None
            if not isinstance(models, dict) or not all(
                    isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                    for k, v in models.items()):
                raise ValueError("not an object with a 'models' map of names to times")
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # nested too deeply too
            self.problem = _set_aside(self.path, e, "recently used models")
            self._cache = None
            return {}
        self._cache = (key, {k: float(v) for k, v in models.items()})
        return dict(self._cache[1])

    def load(self) -> dict[str, float]:
        """Model name -> when it last ran (unix time)."""
        with _locked(self.lock_path):
            return self._read_unlocked()

    def latest(self, n: int = 10) -> list[str]:
        """The ``n`` models run most recently, newest first."""
        used = self.load()
        return sorted(used, key=lambda k: -used[k])[:n]

    def record(self, model: str, when: Optional[float] = None) -> None:
        """``model`` ran now (or at ``when``)."""
        with _locked(self.lock_path):
            used = self._read_unlocked()
            used[model] = time.time() if when is None else float(when)
            kept = dict(sorted(used.items(), key=lambda kv: -kv[1])[:RECENT_KEPT])
            _write_json(self.path, {"format": FORMAT, "models": kept})
            self._cache = None
