"""A job file read against this Blender: its model (catalog or folder), its output
targets, and what can be known wrong before anything starts. Running a job, running a
result again and the farm templates' pre-flight all go through here."""
from __future__ import annotations

from pathlib import Path

import bpy

from ...core import catalog as core_catalog
from ...core import jobfile
from ...core.errors import RunwayError
from ...core.jobs import ModelRef
from ...core.validation import validate_value
from .. import directory, outputs


def resolve_model(source: jobfile.ModelSource):
    """(ModelRef, spec, card or None) for a job file's model."""
    if source.catalog:
        cat = directory.get_catalog()
        try:
            card = cat.get(source.catalog)
        except (KeyError, RunwayError):
            raise jobfile.JobFileError(f"model.catalog: no model {source.catalog!r} in the "
                                       "catalog", field="model.catalog",
                                       hint=f"Known: {', '.join(c.name for c in cat.cards)}.")
        return ModelRef.from_card(card), core_catalog.load_spec(card), card
    if source.folder:
        folder = Path(bpy.path.abspath(source.folder)).resolve()
        spec = core_catalog.load_folder_spec(folder)
        return ModelRef("folder", str(folder)), spec, None
    raise jobfile.JobFileError(
        f"model.{source.kind}: job files run catalog models and model folders so far",
        field=f"model.{source.kind}",
        hint="Use the model's folder, or run it from the Run panel.")


def targets_of(job: jobfile.JobFile) -> dict:
    return {name: [outputs.Target(target=t.target, name=t.name, replace=t.replace, path=t.path,
                                  file_format=t.format, socket=t.socket) for t in ts]
            for name, ts in job.outputs.items()}


def check(context, job: jobfile.JobFile, spec, command) -> None:
    """What can be known wrong before anything starts, as JobFileError naming the field:
    inputs and outputs the model does not have, targets an output cannot go to,
    options and literal values the spec refuses, a render without a camera, a save
    in place of a .blend never saved."""
    fields_in = {f.name: f for f in command.inputs}
    fields_out = {f.name: f for f in command.outputs}
    known_options = {f.name: f for f in spec.options}

    def no_such(section: str, what: str, name: str, known: dict):
        return jobfile.JobFileError(
            f"{section}.{name}: the model has no {what} {name!r}", field=f"{section}.{name}",
            hint=f"Its {what}s: {', '.join(known) or 'none'}.")

    for name, src in job.inputs.items():
        f = fields_in.get(name)
        if f is None:
            raise no_such("inputs", "input", name, fields_in)
        if f.type == "image" and src.source in ("text", "value"):
            raise jobfile.JobFileError(
                f"inputs.{name}: an image cannot come from {src.source!r}",
                field=f"inputs.{name}.source",
                hint="Use render, pass, image, texture, strip or file.")
        if f.type != "image" and src.source not in ("text", "file", "value"):
            raise jobfile.JobFileError(
                f"inputs.{name}: a {f.type} input cannot come from {src.source!r}",
                field=f"inputs.{name}.source", hint="Use value, text or file.")
        if src.source == "value":
            issues = validate_value(f, src.value, name)
            if issues:
                raise jobfile.JobFileError(f"inputs.{name}: {issues[0].message}",
                                           field=f"inputs.{name}.value")
    for name, value in job.options.items():
        if name not in known_options:
            raise no_such("options", "option", name, known_options)
        issues = validate_value(known_options[name], value, name)
        if issues:
            raise jobfile.JobFileError(f"options.{name}: {issues[0].message}",
                                       field=f"options.{name}")
    for name, targets in job.outputs.items():
        f = fields_out.get(name)
        if f is None:
            raise no_such("outputs", "output", name, fields_out)
        allowed = [t for t in outputs.targets_for(f) if t != "NONE"]
        for i, t in enumerate(targets):
            if t.target not in allowed:
                raise jobfile.JobFileError(
                    f"outputs.{name}.{i}.target: {f.name} ({f.type}) cannot go to "
                    f"{t.target}", field=f"outputs.{name}.{i}.target",
                    hint=f"It can go to {', '.join(allowed)}.")
    if any(s.source in ("render", "pass") for s in job.inputs.values()) and \
            context.scene.camera is None:
        raise jobfile.JobFileError("inputs: a render needs a camera, and the scene "
                                   f"{context.scene.name!r} has none", field="inputs",
                                   hint="Add a camera, or make it the scene's camera.")
    if job.save_blend is True and not bpy.data.filepath:
        raise jobfile.JobFileError("save_blend: the .blend has never been saved",
                                   field="save_blend", hint="Give a path to save it to.")
