"""The Blender side: properties, preferences, operators and panels."""
import bpy

from . import preferences, sessions

classes = (
    *preferences.classes,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    # What a crashed Blender left running is ours to stop, once, at start-up.
    sessions.start_orphan_cleanup()


def unregister():
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
