"""Names: file names safe to create on any OS, the FileValue that carries a file, and
``describe`` that names any value in a message without dumping it."""
from __future__ import annotations

import mimetypes
import os
import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..errors import CodecError

# File names: at most this many bytes in UTF-8 (the limit of ext4, APFS, NTFS
# components), extension kept. MAX_NAME_LENGTH is the same limit (kept for callers).
MAX_NAME_BYTES = 255
MAX_NAME_LENGTH = MAX_NAME_BYTES


@dataclass(repr=False)
class FileValue:
    """A file: its bytes in memory (``data``) or on disk (``path``)."""

    name: str
    data: Optional[bytes] = None
    path: Optional[str] = None
    mime: Optional[str] = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise CodecError(f"file {self.name!r} has neither data nor a path")
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError as e:
            raise CodecError(f"cannot read file {self.path!r}: {e.strerror or e}") from e

    def save(self, directory: str, name: Optional[str] = None) -> str:
        """Write into ``directory`` under a sanitised, not yet used name; return the path."""
        return write_unique(directory, safe_filename(name or self.name), self.read_bytes())

    def __repr__(self) -> str:
        where = f"{len(self.data)} bytes" if self.data is not None else f"path={self.path!r}"
        return f"FileValue({self.name!r}, {where}, mime={self.mime!r})"


_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
             *(f"LPT{i}" for i in range(1, 10))}
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')


def safe_filename(name: Any, default: str = "file") -> str:
    """A file name safe to create on any OS, from a name a server (or anyone) chose:
    no directory parts, no "..", no control or reserved characters, at most
    MAX_NAME_LENGTH characters with the extension kept."""
    name = unicodedata.normalize("NFC", str(name)) if isinstance(name, str) else ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_CHARS.sub("_", name)
    name = re.sub(r"\.{2,}", ".", name).strip(" .")
    if not name:
        name = default
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.upper() in _RESERVED:
        name = "_" + name
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        ext = _cut_bytes(ext, 16) if len(ext.encode("utf-8")) <= 16 else ""
        keep = MAX_NAME_BYTES - (len(ext.encode("utf-8")) + 1 if ext else 0)
        base = name[:-(len(ext) + 1)] if ext and name.endswith("." + ext) else name
        name = (_cut_bytes(base, keep).rstrip(" .") or default) + ("." + ext if ext else "")
    return name


def _cut_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes in UTF-8,
    never splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _field_extension(field) -> str:
    """The extension a file field asks for: Runway's ``extension``, else the first
    ``.ext`` or MIME type in a Cog ``accept`` list ("" when it says nothing)."""
    ext = getattr(field, "extension", None)
    if isinstance(ext, str) and ext.strip(". "):
        return "." + ext.strip().lstrip(".")[:16]
    accept = getattr(field, "accept", None) or ""
    for part in str(accept).split(","):
        part = part.strip().lower()
        if part.startswith(".") and len(part) > 1:
            return part[:17]
        if "/" in part and not part.endswith("/*"):
            guessed = mimetypes.guess_extension(part)
            if guessed:
                return guessed
    return ""


def write_unique(directory: str, name: str, data: bytes) -> str:
    """Create ``directory/name`` (never overwriting: a random prefix is added when taken)."""
    name = safe_filename(name)
    for attempt in range(20):
        candidate = name if attempt == 0 else safe_filename(f"{uuid.uuid4().hex[:8]}-{name}")
        path = os.path.join(directory, candidate)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o644)
        except FileExistsError:
            continue
        except OSError as e:
            raise CodecError(f"cannot write {path!r}: {e.strerror or e}") from e
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path
    raise CodecError(f"cannot find a free file name for {name!r} in {directory!r}")


def describe(value: Any, limit: int = 40) -> str:
    """A short, safe description of a value for messages (never dumps big data)."""
    if isinstance(value, np.ndarray):
        return f"array {'x'.join(map(str, value.shape)) or 'scalar'} {value.dtype}"
    if isinstance(value, Image.Image):
        return f"PIL image {value.mode} {value.width}x{value.height}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{len(value)} bytes"
    if isinstance(value, FileValue):
        return f"file {value.name!r}"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not break an error message
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(name: str, message: str) -> CodecError:
    return CodecError(f"{name}: {message}")
