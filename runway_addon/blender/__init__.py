"""The Blender side: properties, preferences, operators and panels."""
import bpy

from . import (batch, directory, engine, operators, outputs, panels, postprocess, preferences,
               props, sessions)

classes = (
    *preferences.classes,
    *directory.classes,
    *operators.classes,
    *batch.classes,
    *postprocess.classes,
    *panels.classes,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    directory.register_properties()
    props.build(directory.get_catalog())
    directory.start()
    engine.register()
    outputs.register()
    batch.register()
    postprocess.register()
    panels.register()
    # What a crashed Blender left running is ours to stop, once, at start-up.
    sessions.start_orphan_cleanup()


def unregister():
    # Runs and model sessions end first: nothing of ours keeps running.
    engine.unregister()
    panels.unregister()
    postprocess.unregister()
    batch.unregister()
    outputs.unregister()
    directory.stop()
    props.teardown()
    directory.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
