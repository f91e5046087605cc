"""The Blender side: properties, preferences, operators and panels."""
import bpy

from . import directory, preferences, sessions

classes = (
    *preferences.classes,
    *directory.classes,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    directory.register_properties()
    directory.start()
    # What a crashed Blender left running is ours to stop, once, at start-up.
    sessions.start_orphan_cleanup()


def unregister():
    directory.stop()
    directory.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
