import bpy
PKG = "bl_ext.user_default.runway"
prefs = bpy.context.preferences
prefs.active_section = 'ADDONS'
bpy.context.window_manager.addon_search = "Runway"
try:
    bpy.ops.preferences.addon_expand(module=PKG)
except Exception as ex:
    print("expand failed", ex)
p = prefs.addons[PKG].preferences
bpy.ops.runway.endpoint_add()
ep = p.endpoints[-1]
ep.name, ep.kind, ep.url = "Studio GPU", "URL", "https://gpu.example.com:5000"
bpy.ops.screen.userpref_show()
