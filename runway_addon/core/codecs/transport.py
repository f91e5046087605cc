"""How bytes travel: the WireContext of a request, data URIs and base64, paths in the
shared folder, and downloads of URL outputs."""
from __future__ import annotations

import base64
import binascii
import os
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from ..errors import RunwayError
from .naming import _fail, describe, safe_filename, write_unique
from .png import DEFAULT_JPEG_QUALITY, DEFAULT_PNG_COMPRESS_LEVEL

@dataclass
class WireContext:
    """How values travel for one request. The first three fields say what the wire can
    carry; each protocol client states them when it builds its context (the defaults are
    what a Runway Model SDK server takes)."""

    # A file field is a path or URL the server opens itself, both ways: path inputs pass
    # through, file contents are written into shared_dir first, and path or URL outputs
    # come back as text. Otherwise files travel as contents (data URIs, URLs, shared paths).
    files_as_paths: bool = True
    # Bytes encoded here (images, label maps, file contents) may go as bare paths in
    # shared_dir instead of data URIs; otherwise (a Runway SDK image field decodes only
    # base64) they are always data URIs.
    bytes_as_paths: bool = False
    directories: bool = True  # a file input may name a directory
    image_format: Optional[str] = None  # "PNG" | "JPEG"; None: field default, else PNG
    # A folder both sides see: where bytes_as_paths writes, and the only place a path in
    # a server's answer may be read from.
    shared_dir: Optional[str] = None
    fetch: Optional[Callable[[str], bytes]] = None  # downloads http(s) URLs in outputs
    png_compress_level: int = DEFAULT_PNG_COMPRESS_LEVEL
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    # 8 or 16 forces a PNG bit depth; None: 16 for uint16 values, 8 otherwise.
    image_bit_depth: Optional[int] = None
    # Segmentation inputs: "ids" (1-channel label-id PNG, exact) or "colors" (RGB map).
    segmentation_wire: str = "ids"


def to_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _b64decode(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    # Be lenient about what servers do: line breaks, URL-safe alphabet, lost padding.
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _fail(name, f"broken base64 data ({describe(text)}): {e}") from e


def parse_data_uri(uri: str, name: str = "value") -> tuple[bytes, str]:
    """``data:<mime>[;params][;base64],<payload>`` -> (bytes, mime)."""
    comma = uri.find(",", 0, 1024)
    if not uri.startswith("data:") or comma < 0:
        raise _fail(name, f"{describe(uri)} is not a data URI")
    params = uri[5:comma].split(";")
    mime = params[0].strip().lower() or "text/plain"
    payload = uri[comma + 1:]
    if "base64" in (p.strip().lower() for p in params[1:]):
        return _b64decode(payload, name), mime
    try:
        return unquote_to_bytes(payload), mime
    except Exception as e:
        raise _fail(name, f"broken data URI: {e}") from e


def _inside(path: str, directory: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([real, root]) == root


def _read_server_path(path: str, ctx: WireContext, name: str) -> bytes:
    """A bare path in a server's answer is read only inside the shared folder: a server
    must not make the add-on read arbitrary local files."""
    if not ctx.shared_dir or not _inside(path, ctx.shared_dir):
        raise _fail(name, f"the server answered with the path {describe(path)}, which is "
                          "outside the shared folder; refusing to read it")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _fail(name, f"cannot read {describe(path)}: {e.strerror or e}") from e


def _fetch(url: str, ctx: WireContext, name: str) -> bytes:
    if ctx.fetch is None:
        raise _fail(name, f"the output is a URL ({describe(url, 80)}) and no download "
                          "function was given")
    try:
        data = ctx.fetch(url)
    except RunwayError:
        raise
    except Exception as e:
        raise _fail(name, f"cannot download {describe(url, 80)}: {e}") from e
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _fail(name, f"downloading {describe(url, 80)} gave {describe(data)}, not bytes")
    return bytes(data)


def _wire_bytes(wire: Any, ctx: WireContext, name: str) -> tuple[bytes, Optional[str],
                                                                  Optional[str]]:
    """A wire value that carries a file -> (bytes, mime or None, a name or None)."""
    if isinstance(wire, (bytes, bytearray, memoryview)):
        return bytes(wire), None, None
    if not isinstance(wire, str):
        raise _fail(name, f"{describe(wire)} is not a data URI, URL, path or base64 string")
    text = wire.strip()
    if not text:
        raise _fail(name, "the value is empty")
    if text[:5].lower() == "data:":
        data, mime = parse_data_uri(text, name)
        return data, mime, None
    scheme = text.split(":", 1)[0].lower() if ":" in text[:10] else ""
    if scheme in ("http", "https"):
        return _fetch(text, ctx, name), None, _name_from_url(text)
    if scheme == "file":
        path = unquote(urlsplit(text).path)
        return _read_server_path(path, ctx, name), None, os.path.basename(path)
    # A raw base64 JPEG starts with "/9j/": look for a real file before guessing base64.
    if len(text) < 4096 and os.path.isabs(text) and os.path.isfile(text):
        return _read_server_path(text, ctx, name), None, os.path.basename(text)
    return _b64decode(text, name), None, None


def _name_from_url(url: str) -> Optional[str]:
    try:
        return unquote(urlsplit(url).path).rsplit("/", 1)[-1] or None
    except ValueError:
        return None


def _send_bytes(data: bytes, mime: str, suffix: str, ctx: WireContext, name: str,
                filename: Optional[str] = None) -> str:
    """Bytes -> a bare path in the shared folder (when the wire takes one), else a data URI."""
    if ctx.bytes_as_paths and ctx.shared_dir:
        base = safe_filename(filename or (safe_filename(name, "input") + suffix))
        return write_unique(ctx.shared_dir, f"{uuid.uuid4().hex[:12]}-{base}", data)
    return to_data_uri(data, mime)
