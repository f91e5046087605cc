"""The one place that writes model results into Blender (main thread only), one module
per target (images, texture, files, sequencer, text, structured), with targets.py (where
an output may go, the values a write passes), record.py (provenance), worker.py (the
worker-side preparation), write.py (apply) and packing.py (packing at save).

Contract:

- ``targets_for(field)`` says where an output of a core.spec field may go (the ids of
  ``TARGETS``, the first being the default; ``NONE`` always last).
- ``prepare(outputs, fields)`` runs on the WORKER thread after a run and touches no bpy:
  image files (PNG, JPEG... the shelf's image outputs are files) are decoded and turned
  into the flat, bottom-up, float32 RGBA buffer that ``foreach_set`` takes, so the main
  thread does not decode or convert. ``apply`` is also correct on values that were not
  prepared (it then does that work itself).
- ``apply(outputs, fields, targets, run)`` writes each output to each of its targets and
  returns one ``Applied`` per write. One failing target never stops the others: the
  failures are collected and, when there are any, ONE ``OutputError`` is raised at the end
  carrying ``applied`` (what was written) and ``failures`` (``Applied`` with ``ok=False``
  and ``error``). It raises nothing but ``RunwayError`` subclasses.
- Nothing of the user's is overwritten unless the target says ``replace``: images, texts
  and objects get Blender's versioned names (.001), files get _001, _002...; strips go
  to a free channel.
- Every image, text, strip and object made here carries the run's provenance as the
  custom property ``runway`` (a JSON string); files get a ``<file>.runway.json`` sidecar.

Cost on the main thread: packing an image encodes it (177 ms for a 1080p 8-bit PNG), so
results are NOT packed when applied. A ``save_pre`` handler (``pack_results``) packs every
result image still only in memory when the .blend is saved, so results survive saving and
reopening. Applying a prepared 1920x1080 result to the Image Editor is then
``images.new`` + ``foreach_set``: median 16 ms (8-bit) and 14 ms (float) in bpy 5.0,
21 and 13 ms in bpy 4.2, on a shared 2-core machine; ``prepare`` spends 110-235 ms on the
worker, and an unprepared 8-bit PNG costs 145-170 ms in ``apply``. The pack at save
costs 165-220 ms per 1080p 8-bit image. EXRs the model sent are packed as they came
(Blender decodes them when shown). Results written to files (FILE, STRIP) live on disk.
"""
from __future__ import annotations

from .targets import (FILE_FORMATS, PROP, TARGET_IDS, TARGETS, Applied, OutputError,  # noqa: F401
                      PreparedImage, RunInfo, Target, targets_for)
from .record import provenance  # noqa: F401
from .worker import prepare  # noqa: F401
from .images import show_in_image_editor  # noqa: F401
from .files import result_path  # noqa: F401
from .sequencer import add_image_sequence, free_channel, strips  # noqa: F401
from .structured import blend_segmentation, draw_overlay, shapes_of  # noqa: F401
from .write import apply  # noqa: F401
from .packing import ensure_save_handler, pack_results, register, unregister  # noqa: F401

