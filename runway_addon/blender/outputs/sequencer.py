"""Results as sequencer strips (images, movies, sounds) on a free channel."""
from __future__ import annotations

import json
import math
import os
import wave

import bpy

from ...core import codecs
from .files import write_result_file
from .record import stamp
from .targets import Applied, id_name, OutputError, PROP, scene_of, Write
from .worker import as_file, file_kind


def strips(editor):
    """The sequencer's top-level strips: ``strips`` in 5.0+, ``sequences`` in 4.2."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def free_channel(collection, start: int, end: int, wanted: int = 0) -> int:
    """The first channel (from ``wanted`` or 1) with no strip overlapping [start, end)."""
    taken = {s.channel for s in collection
             if s.frame_final_start < end and start < s.frame_final_end}
    channel = max(1, wanted or 1)
    while channel in taken:
        channel += 1
    if channel > 128:
        raise OutputError(f"no free sequencer channel at frame {start}",
                          hint="Choose another start frame.")
    return channel


def _sound_frames(path: str, scene) -> int:
    fps = scene.render.fps / (scene.render.fps_base or 1.0)
    try:
        with wave.open(path, "rb") as f:
            seconds = f.getnframes() / float(f.getframerate())
    except (wave.Error, EOFError, OSError):
        return 1
    return max(1, math.ceil(seconds * fps))


def _blend_relative(path: str) -> str:
    if not bpy.data.filepath:
        return path
    try:
        return bpy.path.relpath(path)
    except ValueError:  # another drive
        return path


def to_strip(w: Write) -> list[Applied]:
    scene = scene_of(w.run)
    value = as_file(w.field, w.value)
    fmt = w.target.file_format
    if isinstance(value, codecs.FileValue) and file_kind(value) in ("audio", "video"):
        fmt = "ASIS"
    elif fmt == "ASIS" and isinstance(value, codecs.FileValue) and \
            file_kind(value) == "exr":
        fmt = "EXR"
    path, kind, note = write_result_file(w, fmt=fmt)
    if kind not in ("image", "audio", "video"):
        raise OutputError(f"{w.output} is {kind}, not an image or sound; it was written "
                          f"to {path}", hint="Send it to a Text datablock or a File.")
    editor = scene.sequence_editor or scene.sequence_editor_create()
    coll = strips(editor)
    start = scene.frame_current if w.target.frame_start is None else int(w.target.frame_start)
    length = _sound_frames(path, scene) if kind == "audio" else 1
    channel = free_channel(coll, start, start + length, w.target.channel)
    name = id_name(w.name)
    try:
        if kind == "image":
            strip = coll.new_image(name, path, channel, start)
        elif kind == "audio":
            strip = coll.new_sound(name, path, channel, start)
        else:
            strip = coll.new_movie(name, path, channel, start)
    except RuntimeError as e:
        raise OutputError(f"Blender could not make a {kind} strip: {e}".rstrip(),
                          hint=f"The file was written to {path}; add it by hand.")
    if strip.channel != channel:  # never sit on someone else's strip
        strip.channel = free_channel([s for s in coll if s != strip],
                                     strip.frame_final_start, strip.frame_final_end, channel)
    rel = _blend_relative(path)
    if kind == "image":
        strip.directory = os.path.dirname(rel) + ("/" if not rel.endswith("/") else "")
    elif kind == "audio" and strip.sound is not None:
        strip.sound.filepath = rel
        strip.sound[PROP] = json.dumps(w.record, sort_keys=True)
    stamp(strip, w.record)
    return [Applied(w.output, "STRIP", strip.name, "sound" if kind == "audio" else "strip",
                    f"{strip.name}: channel {strip.channel}, frame {strip.frame_final_start}"
                    f", {path}{note}")]


def add_image_sequence(scene, files: list, frame_start: int, name: str):
    """One image strip holding ``files`` (one per frame, in order, all in one folder)
    at ``frame_start`` on a free channel: post-processed frames as a sequence."""
    if not files:
        raise OutputError("no files for an image sequence")
    folders = {os.path.dirname(f) for f in files}
    if len(folders) != 1:
        raise OutputError("the frames are in several folders; a strip needs one",
                          hint="Write post-processed frames into one folder.")
    editor = scene.sequence_editor or scene.sequence_editor_create()
    coll = strips(editor)
    channel = free_channel(coll, frame_start, frame_start + len(files))
    try:
        strip = coll.new_image(id_name(name), files[0], channel, frame_start)
        for path in files[1:]:
            strip.elements.append(os.path.basename(path))
    except RuntimeError as e:
        raise OutputError(f"Blender could not make an image strip: {e}".rstrip())
    if strip.channel != channel:
        strip.channel = free_channel([s for s in coll if s != strip],
                                     strip.frame_final_start, strip.frame_final_end, channel)
    rel = _blend_relative(files[0])
    strip.directory = os.path.dirname(rel) + "/"
    strip[PROP] = json.dumps({"files": len(files), "frame_start": frame_start})
    return strip
