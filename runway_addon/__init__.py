"""Runway for Blender: find, run and chain machine-learning models.

This file only registers; the engine is in ``core`` (no bpy) and the Blender
side in ``blender``.
"""


def register():
    from . import blender
    blender.register()


def unregister():
    from . import blender
    blender.unregister()
