"""Result images packed into the .blend when it is saved (save_pre), not when applied."""
from __future__ import annotations

import bpy

from .targets import PROP


@bpy.app.handlers.persistent
def pack_results(*_args) -> None:
    """save_pre: pack every result image whose pixels live only in memory (generated, or
    changed in place by a replace), so the .blend keeps them. Packing costs what
    encoding costs (177 ms for a 1080p PNG): paid when saving, not when applying."""
    for image in bpy.data.images:
        if image.library is not None or image.get(PROP) is None:
            continue
        if image.is_dirty or (image.source == "GENERATED" and image.packed_file is None):
            try:
                image.pack()
            except RuntimeError as e:  # a save must go on; say what was not kept
                print(f"Runway: could not pack the result image {image.name!r}: {e}",
                      flush=True)


def ensure_save_handler() -> None:
    """Install ``pack_results`` once (an add-on reload leaves older copies: replaced)."""
    handlers = bpy.app.handlers.save_pre
    for h in list(handlers):
        if getattr(h, "__name__", "") == "pack_results" and h is not pack_results and \
                getattr(h, "__module__", "") == __name__:
            handlers.remove(h)
    if pack_results not in handlers:
        handlers.append(pack_results)


def register() -> None:
    ensure_save_handler()


def unregister() -> None:
    handlers = bpy.app.handlers.save_pre
    for h in list(handlers):
        if getattr(h, "__name__", "") == "pack_results" and \
                getattr(h, "__module__", "") == __name__:
            handlers.remove(h)
