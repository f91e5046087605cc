"""Install the built extension zip into this Blender, enable it, look at what
registered, disable it, look again, and enable it once more.

One script for every Blender: ``python install_check.py --zip Z`` with the bpy
module, or ``blender -b --python install_check.py -- --installed`` with a binary
after ``blender --command extension install-file -e Z``.
It refuses to run unless BLENDER_USER_RESOURCES points at a throw-away folder,
so it never touches a real user's Blender. Prints one line ``RESULT {json}``.
"""
import argparse
import json
import os
import sys

PKG = "bl_ext.user_default.runway"


def main():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser()
    parser.add_argument("--zip", help="install this zip first")
    parser.add_argument("--installed", action="store_true",
                        help="check an extension installed beforehand (blender --command "
                             "extension install-file -e)")
    args = parser.parse_args(argv)
    if not (args.zip or args.installed):
        sys.exit("give --zip or --installed")
    if not os.environ.get("BLENDER_USER_RESOURCES"):
        sys.exit("BLENDER_USER_RESOURCES must point at a temporary folder")

    import bpy

    out = {"blender": bpy.app.version_string, "python": sys.version.split()[0]}
    if args.installed:
        out["install"] = ["ALREADY"]
    else:
        result = bpy.ops.extensions.package_install_files(
            filepath=args.zip, repo="user_default", enable_on_install=True)
        out["install"] = sorted(result)
    out["enabled"] = PKG in bpy.context.preferences.addons
    mod = sys.modules.get(PKG)
    classes = list(mod.blender.classes) if mod else []
    out["classes"] = [c.__name__ for c in classes]
    out["registered"] = [c.__name__ for c in classes if c.is_registered]
    addon = bpy.context.preferences.addons.get(PKG)
    prefs = addon.preferences if addon else None
    out["preferences"] = None if prefs is None else {
        "type": type(prefs).__name__,
        "bl_idname": type(prefs).bl_idname,
        "default_runtime": prefs.default_runtime,
        "memory_limit_gb": prefs.memory_limit_gb,
        "cache_path": prefs.cache_path(),
    }
    out["operators"] = sorted(name for name in dir(bpy.ops.runway) if not name.startswith("_"))
    # The bundled wheels must import inside Blender, from the extension's own
    # site-packages (not from some other copy on the path).
    wheel_mods = {}
    for name in ("PIL.Image", "pydantic", "pydantic_core", "docker"):
        try:
            m = __import__(name, fromlist=["_"])
            wheel_mods[name] = {"file": m.__file__,
                                "version": getattr(m, "__version__", None)}
        except Exception as ex:  # report, the test asserts
            wheel_mods[name] = {"error": f"{type(ex).__name__}: {ex}"}
    out["wheels"] = wheel_mods
    try:
        core = __import__(PKG + ".core.spec", fromlist=["_"])
        out["core_spec"] = core.ModelSpec.__name__
    except Exception as ex:
        out["core_spec"] = f"error: {ex}"

    def ours(handlers):
        return [h.__name__ for h in handlers if getattr(h, "__module__", "").startswith(PKG)]

    def all_ours():
        return {kind: ours(getattr(bpy.app.handlers, kind))
                for kind in ("load_pre", "load_post", "save_pre", "render_init", "render_post",
                             "render_write", "render_complete", "render_cancel")
                if ours(getattr(bpy.app.handlers, kind))}

    props_mod = sys.modules.get(PKG + ".blender.props")
    made = [m.cls for m in props_mod._models.values() if m.cls is not None] if props_mod else []

    def generated():  # the Run panel's PropertyGroups, one per model, still registered
        return sorted(c.__name__ for c in made if c.is_registered)

    out["handlers"] = ours(bpy.app.handlers.load_post)
    out["all_handlers"] = all_ours()
    out["generated"] = generated()
    out["scene_property"] = hasattr(bpy.types.Scene, "runway_models")
    wm = bpy.context.window_manager
    directory = getattr(wm, "runway_directory", None)
    if directory is not None:  # background mode: fill the list as the timer would
        sys.modules[PKG + ".blender.directory"].sync_entries(directory)
        out["directory_models"] = sorted(m.name for m in directory.models)

    bpy.ops.preferences.addon_disable(module=PKG)
    out["after_disable"] = {
        "enabled": PKG in bpy.context.preferences.addons,
        "still_registered": [c.__name__ for c in classes if c.is_registered],
        "operators": sorted(n for n in dir(bpy.ops.runway) if not n.startswith("_")),
        "window_manager_property": hasattr(bpy.types.WindowManager, "runway_directory"),
        "handlers": ours(bpy.app.handlers.load_post),
        "all_handlers": all_ours(),
        "generated": generated(),
        "scene_property": hasattr(bpy.types.Scene, "runway_models"),
    }
    bpy.ops.preferences.addon_enable(module=PKG)
    mod = sys.modules.get(PKG)
    classes = list(mod.blender.classes) if mod else []
    addon = bpy.context.preferences.addons.get(PKG)
    out["after_reenable"] = {
        "enabled": addon is not None,
        "registered": [c.__name__ for c in classes if c.is_registered],
        "preferences": addon is not None and addon.preferences is not None,
    }
    print("RESULT " + json.dumps(out), flush=True)


main()
