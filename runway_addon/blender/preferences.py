"""Add-on preferences: where models run by default and how to reach them.

Tokens are deliberately not properties here: preferences are saved into
userpref.blend. They live in core.tokens (environment or a private file).
"""
import os

import bpy
from bpy.props import (CollectionProperty, EnumProperty, IntProperty, StringProperty)

from ..core import tokens as core_tokens

# The add-on package (bl_ext.<repo>.runway), whatever repository it sits in.
ADDON_PACKAGE = __package__.rpartition(".")[0]

RUNTIMES = (
    ("LOCAL_PROCESS", "Local process", "Run the model folder with its own Python environment "
     "(needs nothing installed)"),
    ("DOCKER_CPU", "Local CPU (Docker)", "Run the model's container on this computer's CPU"),
    ("DOCKER_GPU", "Local GPU (Docker)", "Run the model's container on a local NVIDIA GPU (Linux, "
     "NVIDIA container runtime)"),
    ("REMOTE", "Remote GPU", "Use a model server URL, a remote Docker engine or Replicate"),
)

ENDPOINT_KINDS = (
    ("URL", "Model server URL", "A running Runway Model SDK or Cog server"),
    ("DOCKER_HOST", "Remote Docker engine", "A Docker engine over tcp:// (TLS) or ssh://"),
    ("REPLICATE", "Replicate", "Replicate's hosted models (a token is needed)"),
)


def user_folder(*parts: str, create: bool = True) -> str:
    """A folder under the extension's own user directory (kept across updates)."""
    base = bpy.utils.extension_path_user(ADDON_PACKAGE, path="", create=create)
    path = os.path.join(base, *parts)
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def token_store() -> core_tokens.TokenStore:
    return core_tokens.TokenStore(os.path.join(user_folder(), "tokens.json"))


def get_preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


class RUNWAY_PG_endpoint(bpy.types.PropertyGroup):
    """A remote place to run models. Its token is kept outside Blender's files."""

    # `name` (from PropertyGroup) keys the token store.
    kind: EnumProperty(name="Kind", items=ENDPOINT_KINDS, default="URL")
    url: StringProperty(
        name="Address",
        description="Model server URL (https://...), Docker host (tcp://, ssh://) or "
                    "Replicate model (owner/name[:version])",
    )


class RUNWAY_OT_endpoint_add(bpy.types.Operator):
    bl_idname = "runway.endpoint_add"
    bl_label = "Add Remote Endpoint"
    bl_description = "Add a remote model server, Docker engine or Replicate account"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        prefs = get_preferences(context)
        ep = prefs.endpoints.add()
        taken = {e.name for e in prefs.endpoints}
        n = 1
        while f"Remote {n}" in taken:
            n += 1
        ep.name = f"Remote {n}"
        prefs.active_endpoint = len(prefs.endpoints) - 1
        return {"FINISHED"}


class RUNWAY_OT_endpoint_remove(bpy.types.Operator):
    bl_idname = "runway.endpoint_remove"
    bl_label = "Remove Remote Endpoint"
    bl_description = "Remove the selected endpoint and forget its token"
    bl_options = {"INTERNAL"}

    index: IntProperty(default=-1, options={"SKIP_SAVE"})

    def execute(self, context):
        prefs = get_preferences(context)
        index = self.index if self.index >= 0 else prefs.active_endpoint
        if not 0 <= index < len(prefs.endpoints):
            self.report({"ERROR"}, "No endpoint selected")
            return {"CANCELLED"}
        token_store().clear(prefs.endpoints[index].name)
        prefs.endpoints.remove(index)
        prefs.active_endpoint = max(0, min(prefs.active_endpoint, len(prefs.endpoints) - 1))
        return {"FINISHED"}


class RUNWAY_OT_token_set(bpy.types.Operator):
    bl_idname = "runway.token_set"
    bl_label = "Set Token"
    bl_description = ("Store an access token for this endpoint in a private file in the "
                      "extension's user folder (never in a .blend file)")
    bl_options = {"INTERNAL"}

    endpoint: StringProperty(options={"HIDDEN", "SKIP_SAVE"})
    # Operator properties are never written to .blend files.
    token: StringProperty(name="Token", subtype="PASSWORD", options={"SKIP_SAVE"})

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        if not self.endpoint:
            self.report({"ERROR"}, "No endpoint given")
            return {"CANCELLED"}
        if not self.token.strip():
            self.report({"ERROR"}, "The token is empty; paste it into the field")
            return {"CANCELLED"}
        token_store().set(self.endpoint, self.token)
        self.token = ""
        self.report({"INFO"}, f"Token stored for {self.endpoint}")
        return {"FINISHED"}


class RUNWAY_OT_token_clear(bpy.types.Operator):
    bl_idname = "runway.token_clear"
    bl_label = "Forget Token"
    bl_description = "Delete the stored token of this endpoint"
    bl_options = {"INTERNAL"}

    endpoint: StringProperty(options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        token_store().clear(self.endpoint)
        return {"FINISHED"}


class RUNWAY_UL_endpoints(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop(item, "name", text="", emboss=False, icon="WORLD")
        row.label(text=dict((k, n) for k, n, _ in ENDPOINT_KINDS)[item.kind])


class RunwayPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    default_runtime: EnumProperty(name="Run models on", items=RUNTIMES, default="LOCAL_PROCESS")
    docker_host: StringProperty(
        name="Docker host",
        description="Docker engine address; empty uses DOCKER_HOST or the platform default "
                    "(unix:///var/run/docker.sock, npipe:////./pipe/docker_engine)",
    )
    memory_limit_gb: IntProperty(
        name="Container memory (GB)",
        description="Memory limit for model containers; Docker Desktop's 2 GB default makes many "
                    "models fail, so raise it there too",
        default=8, min=1, soft_max=64,
    )
    cache_folder: StringProperty(
        name="Cache folder",
        description="Model environments, images and run files; empty uses the extension's "
                    "user folder",
        subtype="DIR_PATH",
    )
    idle_minutes: IntProperty(
        name="Stop idle models after (min)",
        description="A started model stays warm for the next run; it is stopped after this many "
                    "minutes without a run (0: keep it until Blender quits or you stop it)",
        default=15, min=0, soft_max=240,
    )
    endpoints: CollectionProperty(type=RUNWAY_PG_endpoint)
    active_endpoint: IntProperty()

    def cache_path(self) -> str:
        return bpy.path.abspath(self.cache_folder) if self.cache_folder else user_folder("cache")

    def draw(self, context):
        layout = self.layout
        if not getattr(bpy.app, "online_access", True):
            box = layout.box()
            box.label(text="Online access is off: only models on this computer will run.",
                      icon="ERROR")
            box.label(text="Turn it on in Preferences > System > Network to use remote servers.")
        col = layout.column()
        col.use_property_split = True
        col.prop(self, "default_runtime")
        col.prop(self, "docker_host")
        col.prop(self, "memory_limit_gb")
        col.prop(self, "cache_folder")
        col.prop(self, "idle_minutes")

        layout.label(text="Remote endpoints")
        row = layout.row()
        row.template_list("RUNWAY_UL_endpoints", "", self, "endpoints", self, "active_endpoint",
                          rows=3)
        ops = row.column(align=True)
        ops.operator(RUNWAY_OT_endpoint_add.bl_idname, text="", icon="ADD")
        ops.operator(RUNWAY_OT_endpoint_remove.bl_idname, text="", icon="REMOVE")
        if 0 <= self.active_endpoint < len(self.endpoints):
            ep = self.endpoints[self.active_endpoint]
            box = layout.box().column()
            box.use_property_split = True
            box.prop(ep, "name")
            box.prop(ep, "kind")
            box.prop(ep, "url")
            store = token_store()
            source = store.source(ep.name)
            row = box.row()
            if source == "environment":
                row.label(text=f"Token from {core_tokens.env_var_for(ep.name)}", icon="LOCKED")
            elif source == "file":
                row.label(text=f"Token {core_tokens.mask(store.get(ep.name))}", icon="LOCKED")
                row.operator(RUNWAY_OT_token_clear.bl_idname, text="Forget").endpoint = ep.name
            else:
                row.label(text="No token", icon="UNLOCKED")
            row.operator(RUNWAY_OT_token_set.bl_idname, text="Set Token").endpoint = ep.name


classes = (
    RUNWAY_PG_endpoint,
    RUNWAY_OT_endpoint_add,
    RUNWAY_OT_endpoint_remove,
    RUNWAY_OT_token_set,
    RUNWAY_OT_token_clear,
    RUNWAY_UL_endpoints,
    RunwayPreferences,
)
