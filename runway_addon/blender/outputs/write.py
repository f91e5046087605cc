"""``apply``: every output to each of its targets, failures collected, one
OutputError at the end (see the package's contract)."""
from __future__ import annotations

import threading

from ...core.errors import RunwayError
from .files import to_file
from .images import to_image_editor
from .packing import ensure_save_handler
from .record import provenance
from .sequencer import to_strip
from .structured import to_objects, to_overlay
from .targets import Applied, OutputError, RunInfo, Target, TARGET_IDS, Write
from .text import to_text
from .texture import to_texture


def apply(outputs: dict, fields: dict, targets: dict, run: RunInfo) -> list[Applied]:
    """Write each output to each of its targets (main thread). See the module's contract."""
    if threading.current_thread() is not threading.main_thread():
        raise OutputError("results can only be written into Blender on the main thread",
                          hint="Call outputs.apply from the engine's timer step.")
    ensure_save_handler()
    done: list[Applied] = []
    failed: list[Applied] = []
    for output, chosen in targets.items():
        for target in chosen or ():
            if target.target == "NONE":
                continue
            try:
                if output not in outputs:
                    raise OutputError(f"the model sent no value for {output!r}",
                                      hint="Check the model's logs.")
                if target.target not in _WRITERS:
                    raise OutputError(f"unknown output target {target.target!r}",
                                      hint="Choose one of " + ", ".join(TARGET_IDS) + ".")
                w = Write(output, fields.get(output), outputs[output], target, run,
                           provenance(run, output))
                done.extend(_WRITERS[target.target](w))
            except RunwayError as e:
                failed.append(_failure(output, target, e))
            except Exception as e:  # bpy raises RuntimeError/TypeError: make them ours
                err = OutputError(f"{output} -> {target.target}: {type(e).__name__}: {e}",
                                  hint="This is a bug in Runway for Blender; please report it.")
                failed.append(_failure(output, target, err))
    if failed:
        first = failed[0].error
        message = "; ".join(f.message for f in failed)
        raise OutputError(message, hint=getattr(first, "hint", ""), applied=done,
                          failures=failed)
    return done


def _failure(output: str, target: Target, e: RunwayError) -> Applied:
    return Applied(output, target.target, target.name, "", f"{output}: {e.message}",
                   ok=False, error=e)


_WRITERS = {
    "IMAGE_EDITOR": to_image_editor,
    "TEXTURE": to_texture,
    "STRIP": to_strip,
    "FILE": to_file,
    "TEXT": to_text,
    "OVERLAY": to_overlay,
    "OBJECTS": to_objects,
}
