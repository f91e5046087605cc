"""Add-on preferences: where models run by default and how to reach them.

Tokens are deliberately not properties here: preferences are saved into
userpref.blend. They live in core.tokens (environment or a private file).
"""
import os
import re
import threading
import uuid

import bpy
from bpy.props import (CollectionProperty, EnumProperty, IntProperty, StringProperty)

from ..core import tokens as core_tokens
from .layout import wrapped

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


def endpoint_key(ep) -> str:
    """What keys an endpoint's token in the file: its stable id (kept across a
    rename); the name only for an endpoint saved before ids existed."""
    return ep.uid or ep.name


def endpoint_env_vars(ep) -> list:
    return core_tokens.env_vars(ep.name, ep.kind)


def endpoint_token(ep):
    """The token for endpoint ``ep`` (environment first, then the file), or None.
    A Remote Docker engine takes no token."""
    if ep.kind == "DOCKER_HOST":
        return None
    return token_store().get(endpoint_key(ep), env_names=endpoint_env_vars(ep))


def replicate_token(prefs=None):
    """The token of the first Replicate endpoint that has one, else the environment's
    (for what is not run through an endpoint: adding a Replicate model)."""
    prefs = prefs or get_preferences()
    for ep in (prefs.endpoints if prefs else ()):
        if ep.kind == "REPLICATE":
            token = endpoint_token(ep)
            if token:
                return token
    return os.environ.get(core_tokens.WELL_KNOWN_ENV["replicate"])


def find_endpoint(prefs, ref: str):
    """The endpoint whose id, or else name, is ``ref``."""
    for ep in prefs.endpoints:
        if ep.uid and ep.uid == ref:
            return ep
    return next((ep for ep in prefs.endpoints if ep.name == ref), None)


def ensure_uid(ep) -> str:
    """Give an endpoint saved before ids existed its id, moving its token over."""
    if not ep.uid:
        ep.uid = uuid.uuid4().hex
        token_store().move(ep.name, ep.uid)
    return ep.uid


def endpoint_problem(kind: str, address: str) -> str:
    """What is wrong with an endpoint's address, in words ('' when it looks right)."""
    address = address.strip()
    if not address:
        return "Enter the address."
    if kind == "DOCKER_HOST":
        if re.match(r"https?://", address):
            return ("A Docker engine is reached over tcp:// (TLS) or ssh://, not http(s)://; "
                    "for a model server choose the kind Model server URL.")
        if not re.match(r"(tcp|ssh)://\S+", address):
            return "A Docker engine address starts with tcp:// or ssh://."
    elif kind == "URL":
        if not re.match(r"https?://\S+", address):
            return "A model server URL starts with http:// or https://."
    elif kind == "REPLICATE":
        if not re.fullmatch(r"(deployment:)?[\w.-]+/[\w.-]+(:\w+)?", address):
            return "A Replicate model is owner/name, owner/name:version or deployment:owner/name."
    return ""


def local_docker_problem(address: str) -> str:
    """What is wrong with the Local Docker engine field ('' when it looks right):
    it holds this computer's engine only (a socket, or tcp:// on this computer, as
    Docker Desktop's 'expose daemon' gives); a remote engine is an endpoint."""
    from urllib.parse import urlparse

    address = address.strip()
    if not address or address.startswith(("unix://", "npipe://")):
        return ""
    host = (urlparse(address).hostname or "") if address.startswith("tcp://") else ""
    if host in ("localhost", "::1") or host.startswith("127."):
        return ""
    return ("A remote Docker engine is a Remote endpoint (Remote Docker engine), not the "
            "local engine: add it there and run on Remote GPU.")


# Connection tests, by endpoint key: {"state": "running"|"done", "ok": bool, "text": str}.
_connection_tests: dict = {}


def check_endpoint(kind: str, address: str, token=None, timeout: float = 10.0) -> tuple:
    """(ok, what was found) for an endpoint: protocol and model, or what is wrong.
    Blocking: call it on a worker thread."""
    problem = endpoint_problem(kind, address)
    if problem:
        return False, problem
    address = address.strip()
    try:
        if kind == "DOCKER_HOST":
            from ..core.runtimes.docker import connect_engine
            client = connect_engine(address)
            try:
                info = client.version()
            finally:
                client.close()
            return True, (f"Docker engine {info.get('Version', '?')} "
                          f"({info.get('Os', '?')}/{info.get('Arch', '?')}) at {address}")
        from ..core.client import connect
        if kind == "REPLICATE":
            client = connect(address, protocol="replicate", token=token, timeout=timeout)
        else:
            client = connect(address, token=token, timeout=timeout)
        with client:
            spec = client.spec()
        cmd = spec.command()
        names = {"cog": "Cog", "runway": "Runway Model SDK", "runway-hosted": "Runway hosted",
                 "replicate": "Replicate"}
        proto = getattr(spec.protocol, "value", str(spec.protocol))
        ins = ", ".join(f.name for f in cmd.inputs) or "none"
        outs = ", ".join(f.name for f in cmd.outputs) or "none"
        return True, (f"{names.get(proto, proto)} model: {len(spec.commands)} command(s); "
                      f"'{cmd.name}' takes {ins} and gives {outs}")
    except Exception as e:  # noqa: BLE001 - every failure is shown, in words
        hint = getattr(e, "hint", "")
        return False, f"{e}" + (f" {hint}" if hint and hint not in str(e) else "")


def connection_result(ep) -> dict:
    return _connection_tests.get(endpoint_key(ep), {})


def _redraw_preferences() -> None:
    for wm in bpy.data.window_managers:
        for window in wm.windows:
            for area in window.screen.areas:
                if area.type == "PREFERENCES":
                    area.tag_redraw()


def get_preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


class RUNWAY_PG_endpoint(bpy.types.PropertyGroup):
    """A remote place to run models. Its token is kept outside Blender's files."""

    # A stable id (set when added) keys the token store, so a rename keeps the token.
    uid: StringProperty(name="Id", options={"HIDDEN"})
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
        ep.uid = uuid.uuid4().hex
        prefs.active_endpoint = len(prefs.endpoints) - 1
        return {"FINISHED"}


class _OnEndpoint:
    """An operator on one endpoint (its ``index``, else the selected one), done in
    ``act``; none there is an ERROR report."""

    bl_options = {"INTERNAL"}

    index: IntProperty(default=-1, options={"SKIP_SAVE"})

    def execute(self, context):
        prefs = get_preferences(context)
        index = self.index if self.index >= 0 else prefs.active_endpoint
        if not 0 <= index < len(prefs.endpoints):
            self.report({"ERROR"}, "No endpoint selected")
            return {"CANCELLED"}
        return self.act(prefs, index, prefs.endpoints[index])


class RUNWAY_OT_endpoint_remove(_OnEndpoint, bpy.types.Operator):
    bl_idname = "runway.endpoint_remove"
    bl_label = "Remove Remote Endpoint"
    bl_description = "Remove the selected endpoint and forget its token"

    def act(self, prefs, index, ep):
        store = token_store()
        store.clear(endpoint_key(ep))
        if ep.uid:
            store.clear(ep.name)  # a token kept from before ids existed
        _connection_tests.pop(endpoint_key(ep), None)
        prefs.endpoints.remove(index)
        prefs.active_endpoint = max(0, min(prefs.active_endpoint, len(prefs.endpoints) - 1))
        return {"FINISHED"}


class _OnToken:
    """An operator on the token of ``endpoint``: an endpoint's id or name (the token
    is kept under the endpoint's id), or a name no endpoint has."""

    bl_options = {"INTERNAL"}

    endpoint: StringProperty(options={"HIDDEN", "SKIP_SAVE"})

    def named_endpoint(self, context):
        prefs = get_preferences(context)
        return find_endpoint(prefs, self.endpoint) if prefs else None


class RUNWAY_OT_token_set(_OnToken, bpy.types.Operator):
    bl_idname = "runway.token_set"
    bl_label = "Set Token"
    bl_description = ("Store an access token for this endpoint in a private file in the "
                      "extension's user folder (never in a .blend file)")

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
        ep = self.named_endpoint(context)
        store = token_store()
        if ep is None:
            store.set(self.endpoint, self.token)
            self.token = ""
            self.report({"INFO"}, f"Token stored for {self.endpoint}")
            return {"FINISHED"}
        if ep.kind == "DOCKER_HOST":
            self.report({"ERROR"}, "A Remote Docker engine takes no token (it uses TLS "
                                   "certificates or SSH keys)")
            return {"CANCELLED"}
        store.set(ensure_uid(ep), self.token)
        self.token = ""
        var = store.source_var(ep.uid, endpoint_env_vars(ep))
        if var:
            self.report({"WARNING"}, f"Token stored for {ep.name}, but {var} is set and is "
                                     f"used instead; unset it to use the stored token")
        else:
            self.report({"INFO"}, f"Token stored for {ep.name}")
        _redraw_preferences()
        return {"FINISHED"}


class RUNWAY_OT_token_clear(_OnToken, bpy.types.Operator):
    bl_idname = "runway.token_clear"
    bl_label = "Forget Token"
    bl_description = "Delete the stored token of this endpoint"

    def execute(self, context):
        ep = self.named_endpoint(context)
        token_store().clear(endpoint_key(ep) if ep is not None else self.endpoint)
        _redraw_preferences()
        return {"FINISHED"}


class RUNWAY_OT_endpoint_test(_OnEndpoint, bpy.types.Operator):
    bl_idname = "runway.endpoint_test"
    bl_label = "Test Connection"
    bl_description = ("Reach the endpoint and say what answers there: the protocol and the "
                      "model, or what is wrong (on a worker thread: Blender stays responsive)")

    def act(self, prefs, index, ep):
        key, kind, address, token = endpoint_key(ep), ep.kind, ep.url, endpoint_token(ep)
        if _connection_tests.get(key, {}).get("state") == "running":
            return {"CANCELLED"}
        result = {"state": "running", "ok": False, "text": f"Reaching {address.strip()}\u2026"}
        _connection_tests[key] = result

        def work():
            ok, text = check_endpoint(kind, address, token)
            result.update(ok=ok, text=text, state="done")  # plain values, no bpy here

        threading.Thread(target=work, name="runway-endpoint-test", daemon=True).start()
        if not bpy.app.background:
            def poll():
                _redraw_preferences()
                return None if result["state"] == "done" else 0.25
            bpy.app.timers.register(poll, first_interval=0.25)
        return {"FINISHED"}


def user_models_folder(create: bool = True) -> str:
    """Where the models you add are kept (one folder per card), beside the workspaces."""
    return user_folder("models", create=create)


def catalog_folders(prefs=None) -> list:
    """Every folder the catalog reads: your own models, then the preferences' folders."""
    prefs = prefs or get_preferences()
    out = [user_models_folder()]
    for f in (prefs.catalog_folders if prefs else ()):
        path = bpy.path.abspath(f.path).strip() if f.path.strip() else ""
        if path and path not in out:
            out.append(path)
    return out


class RUNWAY_PG_catalog_folder(bpy.types.PropertyGroup):
    """A folder of model cards (each ``<model>/card.json``) that the directory reads."""

    path: StringProperty(name="Folder", subtype="DIR_PATH",
                         description="A folder holding model folders, each with a card.json "
                                     "(read on Refresh)")


class RUNWAY_OT_catalog_folder_add(bpy.types.Operator):
    bl_idname = "runway.catalog_folder_add"
    bl_label = "Add Catalog Folder"
    bl_description = "Add a folder of model cards to the Model Directory"
    bl_options = {"INTERNAL"}

    path: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        prefs = get_preferences(context)
        prefs.catalog_folders.add().path = self.path
        return {"FINISHED"}


class RUNWAY_OT_catalog_folder_remove(bpy.types.Operator):
    bl_idname = "runway.catalog_folder_remove"
    bl_label = "Remove Catalog Folder"
    bl_description = "Stop reading this folder (its files stay on disk)"
    bl_options = {"INTERNAL"}

    index: IntProperty(default=-1)

    def execute(self, context):
        prefs = get_preferences(context)
        if not 0 <= self.index < len(prefs.catalog_folders):
            return {"CANCELLED"}
        prefs.catalog_folders.remove(self.index)
        return {"FINISHED"}


class RUNWAY_UL_endpoints(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop(item, "name", text="", emboss=False, icon="WORLD")
        row.label(text=dict((k, n) for k, n, _ in ENDPOINT_KINDS)[item.kind])


class RunwayPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    default_runtime: EnumProperty(name="Run models on", items=RUNTIMES, default="LOCAL_PROCESS")
    # The one place for this computer's engine; a remote engine is an endpoint
    # (Remote Docker engine), so a Docker address is entered in one place only.
    docker_host: StringProperty(
        name="Local Docker engine",
        description="This computer's Docker engine (a socket, or tcp://localhost:2375); "
                    "empty uses DOCKER_HOST or the platform default (unix:///var/run/docker.sock, "
                    "npipe:////./pipe/docker_engine). A remote engine is a Remote endpoint",
    )
    docker_publish_address: StringProperty(
        name="Model ports on remote Docker hosts",
        description="The address of a remote Docker host that model ports are published on. "
                    "Empty: loopback only, so only an engine on this computer can be used. "
                    "0.0.0.0 (all) or one of the host's addresses (e.g. a VPN's): anyone who "
                    "can reach it can use the model, which has no login",
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
    catalog_folders: CollectionProperty(type=RUNWAY_PG_catalog_folder)

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
        if self.default_runtime == "REMOTE":
            if 0 <= self.active_endpoint < len(self.endpoints):
                ep = self.endpoints[self.active_endpoint]
                col.label(text=f"Remote GPU uses the selected endpoint: {ep.name}", icon="WORLD")
            else:
                col.label(text="Remote GPU: select an endpoint below", icon="ERROR")
        col.prop(self, "docker_host")
        problem = local_docker_problem(self.docker_host)
        if problem:
            col.label(text=problem, icon="ERROR")
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
            problem = endpoint_problem(ep.kind, ep.url)
            if problem:
                box.label(text=problem, icon="ERROR")
            ref = endpoint_key(ep)
            if ep.kind == "DOCKER_HOST":
                box.label(text="No token: a Docker engine uses TLS certificates or SSH keys",
                          icon="INFO")
                box.prop(self, "docker_publish_address")
            else:
                store = token_store()
                var = store.source_var(ref, endpoint_env_vars(ep))
                row = box.row()
                if var:
                    row.label(text=f"Token from the environment variable {var}", icon="LOCKED")
                    if store.stored(ref):
                        row.label(text="(the stored token is not used)")
                elif store.stored(ref):
                    row.label(text=f"Token {core_tokens.mask(store.get(ref, env_names=[]))}",
                              icon="LOCKED")
                else:
                    row.label(text="No token", icon="UNLOCKED")
                if store.stored(ref):
                    row.operator(RUNWAY_OT_token_clear.bl_idname, text="Forget").endpoint = ref
                row.operator(RUNWAY_OT_token_set.bl_idname, text="Set Token").endpoint = ref
            row = box.row()
            row.operator(RUNWAY_OT_endpoint_test.bl_idname, icon="PLUGIN")
            result = connection_result(ep)
            if result:
                icon = "TIME" if result["state"] == "running" else \
                    ("CHECKMARK" if result["ok"] else "ERROR")
                sub = box.column()
                sub.label(text={"TIME": "Testing\u2026", "CHECKMARK": "Connected",
                                "ERROR": "Not connected"}[icon], icon=icon)
                wrapped(sub, result["text"], context)

        layout.label(text="Model catalog folders")
        col = layout.column(align=True)
        col.label(text=f"Your own models: {user_models_folder(create=False)}", icon="USER")
        for i, folder in enumerate(self.catalog_folders):
            row = col.row(align=True)
            row.prop(folder, "path", text="")
            row.operator(RUNWAY_OT_catalog_folder_remove.bl_idname, text="",
                         icon="X").index = i
        col.operator(RUNWAY_OT_catalog_folder_add.bl_idname, icon="ADD")


classes = (
    RUNWAY_PG_endpoint,
    RUNWAY_PG_catalog_folder,
    RUNWAY_OT_catalog_folder_add,
    RUNWAY_OT_catalog_folder_remove,
    RUNWAY_OT_endpoint_add,
    RUNWAY_OT_endpoint_remove,
    RUNWAY_OT_token_set,
    RUNWAY_OT_token_clear,
    RUNWAY_OT_endpoint_test,
    RUNWAY_UL_endpoints,
    RunwayPreferences,
)
