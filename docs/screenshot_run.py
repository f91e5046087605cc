"""Blender side of the Run panel screenshots (docs/img/run_*.png, texture_and_strip.png).

Runs inside a windowed Blender (Xvfb) started by ``docs/screenshots.py`` through
``buildtools/debian_blender.screenshot(script_ready=True)``::

    blender --python docs/screenshot_run.py -- MODE [--cache FOLDER]

MODE is one of

- ``before``:  the Run panel of ``style-transfer`` before any run;
- ``during``:  a run started from the Run button's operator, pictured while it is in flight
               (a cold session: the model's server starting). The script takes this
               picture itself, inside a timer step, so the run cannot end in between;
- ``after``:   the same run finished, its result shown in an Image Editor (left of the 3D View);
- ``texture``: the output sent to a material texture and a sequencer strip: 3D View above,
               Shader Editor and Sequencer below;
- ``directory``: the Model Directory with its filters and sort open, person segmentation's
               card below (thumbnails to enlarge, its template);
- ``workspace``: a workspace ("Lookdev") holding a model added from a folder (a copy of the
               shelf's style-transfer folder, added with *Add Your Model*), selected, its card below;
- ``preferences``: the add-on's preferences in the main area (Local Docker engine, endpoints).

The model really runs: the engine's timer drives it, as after a click on Run. The script
sets up a small scene (Cycles, 16 samples, 480x270), selects the model in the Model
Directory, clicks the sidebar's Runway tab with xdotool (no script can select a sidebar tab),
drags the sidebar wider, collapses the Model Card (its header is found in the screen's pixels:
the first sub-panel band), starts the run, and, when the moment has come, writes the file
named by ``RW_SCREENSHOT_READY`` (the driver then takes the picture). It prints
``RW-CROP x y w h`` (screen pixels) for the driver's crop and ``RW-STEP`` lines with times.
"""
import os
import subprocess
import sys
import time

import bpy

PKG = "bl_ext.user_default.runway"
MODEL = "style-transfer"

argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
MODE = argv[0] if argv else "before"
CACHE = argv[argv.index("--cache") + 1] if "--cache" in argv else ""
READY = os.environ.get("RW_SCREENSHOT_READY", "")
T0 = time.monotonic()

# Offsets in the 3D View's sidebar (Blender 4.3, UI scale 1), from the region's top right /
# top left corner: the "Runway" tab (below Item, Tool, View) and the Model Card header
# (below the Model Directory panel with its filters hidden).
TAB_FROM_RIGHT, TAB_FROM_TOP = 10, 171
CARD_HEADER_X, CARD_HEADER_FROM_TOP = 60, 208
SUBPANEL_HEADER = 26  # px, a sub-panel header's height
SIDEBAR_WIDER = 110  # px added to the sidebar's width (a drag on its edge)
SIDEBAR_EDGE = 9  # its visible left edge, right of the region's (the region overlaps)


def log(*parts):
    print(f"RW-STEP {time.monotonic() - T0:6.1f}s", *parts, flush=True)


def mod(name):
    return __import__(f"{PKG}.blender.{name}", fromlist=["_"])


# ------------------------------------------------------------------ scene


def material(name, rgb, roughness=0.5):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    mat.diffuse_color = (*rgb, 1.0)  # the Solid view's colour
    return mat


def add(op, name, mat, **kw):
    op(**kw)
    obj = bpy.context.view_layer.objects.active
    obj.name = name
    obj.data.materials.append(mat)
    return obj


def build_scene():
    scene = bpy.context.scene
    cube = bpy.data.objects["Cube"]
    cube.data.materials.clear()
    cube.data.materials.append(material("Cube", (0.9, 0.35, 0.08), 0.4))
    cube.location = (0, 0, 0)
    mesh = bpy.ops.mesh
    add(mesh.primitive_plane_add, "Ground", material("Ground", (0.75, 0.75, 0.72), 0.8),
        size=40, location=(0, 0, -1))
    sphere = add(mesh.primitive_uv_sphere_add, "Sphere",
                 material("Sphere", (0.1, 0.3, 0.9), 0.2), radius=1.0,
                 location=(-1.6, -1.7, 0), segments=48, ring_count=24)
    bpy.ops.object.shade_smooth()
    monkey = add(mesh.primitive_monkey_add, "Suzanne",
                 material("Suzanne", (0.2, 0.7, 0.25), 0.5), size=1.6,
                 location=(1.7, 1.8, -0.1), rotation=(-0.3, 0, 0.82))
    bpy.ops.object.shade_smooth()
    sun = bpy.data.lights.new("Sun", "SUN")
    sun.energy = 3.0
    sun.angle = 0.2
    sun_obj = bpy.data.objects.new("Sun", sun)
    sun_obj.rotation_euler = (0.8, 0.2, 0.6)
    scene.collection.objects.link(sun_obj)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    if bg is not None:
        bg.inputs["Color"].default_value = (0.45, 0.55, 0.7, 1.0)
        bg.inputs["Strength"].default_value = 0.8
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 480, 270
    scene.render.resolution_percentage = 100
    if MODE == "texture":
        scene.frame_end = 12  # a short range: the one-frame strip is not lost in the timeline
    select_cube()


def select_cube():
    # The cube is the active object: a TEXTURE output lands on its material.
    cube = bpy.data.objects["Cube"]
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj == cube)
    bpy.context.view_layer.objects.active = cube


def configure_runway():
    prefs = bpy.context.preferences.addons[PKG].preferences
    if CACHE:
        prefs.cache_folder = CACHE
    prefs.default_runtime = "LOCAL_PROCESS"
    directory = mod("directory")
    wm = bpy.context.window_manager
    directory.sync_entries(wm.runway_directory)
    d = wm.runway_directory
    d.show_filters = False
    d.active = [m.name for m in d.models].index(MODEL)
    props = mod("props")
    s = props.settings(bpy.context.scene, MODEL)
    targets = props.prop_id("out", "output", "targets")
    if MODE == "texture":
        setattr(s, targets, {"TEXTURE", "STRIP"})
    else:
        setattr(s, targets, {"IMAGE_EDITOR"})
    log("settings", getattr(s, props.prop_id("in", "image", "src")), getattr(s, targets))
    env = environment()
    log("model environment", env.path, "ready" if env.is_ready() else "NOT READY",
        "python", os.path.realpath(env.python), os.path.exists(env.python))
    if not env.is_ready():
        with open("/proc/mounts") as f:
            log("mounts", [line.split()[1] for line in f if line.split()[1].startswith("/root")])


def configure_directory():
    """The directory pictures: no run, the list and a card."""
    prefs = bpy.context.preferences.addons[PKG].preferences
    if CACHE:
        prefs.cache_folder = CACHE
    directory = mod("directory")
    wm = bpy.context.window_manager
    directory.sync_entries(wm.runway_directory)
    d = wm.runway_directory
    d.show_filters = MODE == "directory"
    if MODE == "directory":
        d.sort = "NAME"
        d.active = [m.name for m in d.models].index("person-segmentation")
        return
    import shutil
    import tempfile
    shelf = directory.core_catalog.builtin_models_dir()
    folder = os.path.join(tempfile.mkdtemp(prefix="my-models-"), "watercolour-look")
    shutil.copytree(shelf / "style-transfer", folder,
                    ignore=shutil.ignore_patterns("card.json", "gallery"))
    store = directory.workspace_store()
    ws = store.create("Lookdev", ["upscale", "denoise"])
    bpy.context.scene.runway_workspace = ws.id
    result = bpy.ops.runway.model_add(kind="FOLDER", folder=folder,
                                      title="Watercolour Look (my style network)",
                                      short_title="Watercolour Look", keywords="mine, lookdev",
                                      overview="My own copy of the style network, tuned for "
                                               "the watercolour look of this project.")
    log("model_add ->", result)
    name = directory.selected_card(d).name
    store.move_model(ws.id, name, -2)  # first in the workspace
    directory.select_model(d, name)
    log("workspace", store.get(ws.id).models, "selected", name)


def configure_preferences():
    prefs = bpy.context.preferences
    prefs.active_section = "ADDONS"
    bpy.context.window_manager.addon_search = "Runway"
    area = areas("VIEW_3D")[0]
    area.type = "PREFERENCES"
    with bpy.context.temp_override(window=window(), area=area):
        bpy.ops.preferences.addon_expand(module=PKG)
    p = prefs.addons[PKG].preferences
    for name, kind, url in (("Studio GPU", "URL", "https://gpu.example.com:5000"),
                            ("Render farm engine", "DOCKER_HOST", "tcp://farm.example.com:2376")):
        bpy.ops.runway.endpoint_add()
        ep = p.endpoints[-1]
        ep.name, ep.kind, ep.url = name, kind, url
    p.active_endpoint = 0
    for a in window().screen.areas:
        a.tag_redraw()


def environment():
    process = __import__(f"{PKG}.core.runtimes.process", fromlist=["_"])
    card = mod("props").model(MODEL).card
    return process.ModelEnvironment(card.folder, mod("sessions").runtime_dirs()["env_root"])


# ------------------------------------------------------------------ layout


def window():
    return bpy.context.window_manager.windows[0]


def areas(kind):
    return [a for a in window().screen.areas if a.type == kind]


def region_of(area, kind):
    return next(r for r in area.regions if r.type == kind)


def split(area, direction, factor):
    with bpy.context.temp_override(window=window(), area=area,
                                   region=region_of(area, "WINDOW")):
        bpy.ops.screen.area_split(direction=direction, factor=factor)


def arrange():
    """Split the 3D View for the pictures that show more editors (their sizes are known
    only after the next redraw: ``assign()`` then gives each its editor)."""
    view3d = areas("VIEW_3D")[0]
    if MODE == "after":
        split(view3d, "VERTICAL", 0.42)
    elif MODE == "texture":
        split(view3d, "HORIZONTAL", 0.42)
    for area in window().screen.areas:
        area.tag_redraw()


def assign():
    if MODE == "after":  # the Image Editor left of the 3D View
        left = min(areas("VIEW_3D"), key=lambda a: a.x)
        left.type = "IMAGE_EDITOR"
    elif MODE == "texture":  # 3D View above; Shader Editor and Sequencer below
        bottom = min(areas("VIEW_3D"), key=lambda a: a.y)
        bottom.type = "NODE_EDITOR"
        bottom.spaces.active.tree_type = "ShaderNodeTree"
        bottom.spaces.active.show_region_ui = False
    for area in areas("VIEW_3D"):
        space = area.spaces.active
        space.show_region_ui = True
        if MODE == "texture":
            space.shading.type = "SOLID"
            space.shading.color_type = "TEXTURE"
    for area in window().screen.areas:
        area.tag_redraw()


def arrange_more():
    if MODE == "texture":
        split(areas("NODE_EDITOR")[0], "VERTICAL", 0.5)


def assign_more():
    if MODE == "texture":
        right = max(areas("NODE_EDITOR"), key=lambda a: a.x)
        right.type = "SEQUENCE_EDITOR"
        right.spaces.active.view_type = "SEQUENCER_PREVIEW"
        right.spaces.active.show_seconds = False
        right.spaces.active.show_region_ui = False
    log("areas", [(a.type, a.x, a.y, a.width, a.height) for a in window().screen.areas])
    for area in window().screen.areas:
        area.tag_redraw()


def sidebar():
    area = areas("VIEW_3D")[0]
    return area, region_of(area, "UI")


def to_screen(region, dx_from_left, dy_from_top):
    """Screen pixel (origin top left) of a point given relative to a region's top left."""
    win = window()
    return region.x + dx_from_left, win.height - (region.y + region.height) + dy_from_top


def click(x, y):
    log("click", x, y)
    return subprocess.Popen(["xdotool", "mousemove", "--sync", str(x), str(y), "click", "1"])


def park_mouse():
    # Over the 3D View's empty top left corner: no tooltip, no highlighted header.
    area, region = sidebar()
    x, y = to_screen(region_of(area, "WINDOW"), 200, 160)
    subprocess.Popen(["xdotool", "mousemove", str(x), str(y)])


def crop_line():
    """The part of the window the picture keeps (the driver crops to it)."""
    win = window()
    if MODE == "preferences":
        area = areas("PREFERENCES")[0]
        print(f"RW-CROP {area.x} {win.height - (area.y + area.height)} {area.width} "
              f"{area.height}", flush=True)
        return
    area, region = sidebar()
    top = 0
    right = region.x + region.width
    if MODE in ("before", "during", "directory", "workspace"):
        left = max(0, region.x - 340)
        bottom = win.height - area.y
    elif MODE == "after":
        left = 0
        bottom = win.height - area.y
    else:  # texture: the whole window but the Outliner and Properties column
        left = 0
        bottom = win.height
    print(f"RW-CROP {left} {top} {right - left} {bottom - top}", flush=True)


# ------------------------------------------------------------------ the run


def start_run():
    area, region = sidebar()
    with bpy.context.temp_override(window=window(), area=area, region=region):
        result = bpy.ops.runway.run("INVOKE_DEFAULT", model=MODEL)
    log("runway.run ->", result)


def status():
    eng = mod("engine").current()
    st = eng.status.get(MODEL) if eng else None
    entry = eng.session_of(MODEL) if eng else None
    return eng, st, entry.state.value if entry is not None else "stopped"


def take_picture():
    if READY.endswith(".ready"):
        t = time.monotonic()
        subprocess.run(["import", "-window", "root", READY[:-len(".ready")]], timeout=60)
        log(f"picture taken by the script ({time.monotonic() - t:.1f} s)")


def ready(why):
    log("ready:", why)
    crop_line()
    if READY:
        with open(READY, "w") as f:
            f.write(why + "\n")


def show_results(zoom_nodes=False):
    """After the run: fit the Image Editor, Shader Editor and Sequencer to what was made."""
    for area in window().screen.areas:
        wregion = region_of(area, "WINDOW")
        with bpy.context.temp_override(window=window(), area=area, region=wregion):
            try:
                if area.type == "IMAGE_EDITOR":
                    bpy.ops.image.view_all(fit_view=False)
                elif area.type == "NODE_EDITOR":
                    bpy.ops.node.view_all()
                    if zoom_nodes:  # view_all leaves a wide margin: the nodes are small
                        bpy.ops.view2d.zoom_in(zoomfacx=0.12, zoomfacy=0.12)
                elif area.type == "SEQUENCE_EDITOR":
                    bpy.ops.sequencer.select_all(action="SELECT")
                    bpy.ops.sequencer.view_all()
                    for r in area.regions:
                        if r.type == "PREVIEW":
                            with bpy.context.temp_override(window=window(), area=area,
                                                           region=r):
                                bpy.ops.sequencer.view_all_preview()
            except RuntimeError as e:
                log("view_all failed in", area.type, e)
        area.tag_redraw()


# ------------------------------------------------------------------ the steps

steps = []
state = {"seen": [], "done_at": None, "step": 0, "wait_until": 0.0}


def tick():
    now = time.monotonic()
    if now < state["wait_until"]:
        return 0.1
    if state["step"] >= len(steps):
        return None
    try:
        delay = steps[state["step"]]()
    except Exception:  # say so and let the driver take the picture now
        import traceback
        traceback.print_exc()
        log("error in", steps[state["step"]].__name__)
        ready("error")
        return None
    if delay is None:  # step finished: the next one
        state["step"] += 1
        return 0.1
    if delay is False:  # not yet: poll again
        return 0.1
    state["step"] += 1
    state["wait_until"] = now + delay
    return 0.1


def step_setup():
    build_scene()
    if MODE in ("directory", "workspace"):
        configure_directory()
    else:
        configure_runway()
    arrange()
    return 0.5


def step_setup_preferences():
    configure_preferences()
    return 2.0


def step_park_corner():
    # Below the preferences' section buttons: no widget there, so no tooltip.
    win = window()
    subprocess.run(["xdotool", "mousemove", "--sync", "60", str(win.height - 60)], timeout=30)
    return 2.0


def step_layout():
    assign()
    arrange_more()
    return 0.5


def step_layout_more():
    assign_more()
    log("setup done")
    return 1.0


def step_tab():
    area, region = sidebar()
    log("sidebar region", region.x, region.y, region.width, region.height,
        "window", window().width, window().height)
    click(*to_screen(region, region.width - TAB_FROM_RIGHT, TAB_FROM_TOP))
    return 1.0


def step_widen_sidebar():
    # Drag the sidebar's left edge: long titles and status lines fit. The drag is tried
    # again while the width has not changed (the first one after start-up can be lost).
    area, region = sidebar()
    tries = state.setdefault("drags", [])
    if tries and region.width >= tries[0] + SIDEBAR_WIDER // 2:
        log("sidebar width", region.width)
        return None
    if len(tries) >= 4:
        log("could not widen the sidebar; width", region.width)
        return None
    tries.append(region.width)
    x, y = to_screen(region, SIDEBAR_EDGE, 400)
    log("drag sidebar edge", x, y)
    subprocess.Popen(["xdotool", "mousemove", "--sync", str(x + 30), str(y), "sleep", "0.3",
                      "mousemove", "--sync", str(x), str(y), "sleep", "0.5", "mousedown", "1",
                      "sleep", "0.3", "mousemove", "--sync", str(x - 20), str(y), "sleep",
                      "0.3", "mousemove", "--sync", str(x - SIDEBAR_WIDER), str(y), "sleep",
                      "0.3", "mouseup", "1"])
    state["step"] -= 1  # this step again, after the drag
    return 3.0


def screen_column(x, y0, y1):
    """The colours of the screen's pixels (x, y0..y1) as (r, g, b) tuples, read from the X
    server like the picture itself (ImageMagick's import)."""
    ppm = subprocess.run(["import", "-window", "root", "-crop", f"1x{y1 - y0}+{x}+{y0}",
                          "+repage", "-depth", "8", "ppm:-"], capture_output=True,
                         timeout=30).stdout
    # P6 <w> <h> <max> then the bytes
    fields, pos = [], 0
    while len(fields) < 4:
        while ppm[pos:pos + 1].isspace():
            pos += 1
        end = pos
        while not ppm[end:end + 1].isspace():
            end += 1
        fields.append(ppm[pos:end])
        pos = end
    data = ppm[pos + 1:]
    step = 3 if int(fields[3]) < 256 else 6  # 16-bit samples: the high bytes
    return [tuple(data[i:i + step:step // 3]) for i in range(0, len(data) - step + 1, step)]


def find_card_header(region):
    """Screen y of the Model Card header's middle: in the sidebar's left margin, the first
    sub-panel (the Model Card, open) is the first band darker than its parent panel; its
    header lies just above it."""
    x, top = to_screen(region, SIDEBAR_EDGE + 5, 0)
    bottom = top + region.height
    colours = screen_column(x, top, bottom)
    panel = colours[min(40, len(colours) - 1)]  # the Model Directory panel's body
    for i, c in enumerate(colours[40:], start=40):
        if sum(c) < sum(panel) - 12:
            log("first sub-panel body at", top + i, "colours", panel, c)
            return top + i - SUBPANEL_HEADER // 2
    return None


def step_collapse_card():
    area, region = sidebar()
    y = find_card_header(region)
    if y is None:
        log("Model Card header not found; the offset is used")
        x, y = to_screen(region, CARD_HEADER_X, CARD_HEADER_FROM_TOP)
    else:
        x = to_screen(region, CARD_HEADER_X, 0)[0]
    click(x, y)
    return 2.5  # the panels' collapse is animated


def step_park():
    select_cube()  # again: a stray click in the viewport would have selected something else
    park_mouse()
    for area in window().screen.areas:
        area.tag_redraw()
    return 1.5


def step_run():
    start_run()
    return 0.2


def step_wait_in_flight():
    eng, st, session = status()
    seen = (st.state if st else "", st.message if st else "", session)
    if seen not in state["seen"]:
        state["seen"].append(seen)
        log("status", *seen)
    if st is not None and st.state in ("starting", "running") and \
            session in ("starting", "running"):
        # Seen in flight for a few polls: the window has been drawn so since. Picture it
        # now, inside this step: the engine's timer cannot apply the end of the run
        # while this one runs, so the drawn panel is the in-flight one.
        state["in_flight"] = state.get("in_flight", 0) + 1
        if state["in_flight"] >= 3:
            take_picture()
            return None
        return False
    state["in_flight"] = 0
    if st is not None and st.state in ("done", "failed", "cancelled"):
        log("missed the moment: the run is already", st.state)
        return None
    return False


def step_wait_done():
    eng, st, session = status()
    seen = (st.state if st else "", st.message if st else "", session)
    if seen not in state["seen"]:
        state["seen"].append(seen)
        log("status", *seen)
    if st is not None and not st.active and st.state in ("done", "failed", "cancelled"):
        for a in st.applied:
            log("applied", a.output, a.target, a.name, a.ok, getattr(a, "detail", ""))
        if st.error is not None:
            log("error", st.error.message, st.error.hint)
        return None
    return False


def step_show_results():
    show_results()
    return 1.5


def step_show_results_again():
    show_results(zoom_nodes=True)  # node sizes are known only after the first draw
    return 1.0


def step_ready():
    for area in window().screen.areas:
        area.tag_redraw()
    ready(MODE)
    return None


PREPARE = [step_setup, step_layout, step_layout_more, step_tab, step_widen_sidebar,
           step_collapse_card, step_park]
if MODE == "before":
    steps = [*PREPARE, step_ready]
elif MODE in ("directory", "workspace"):  # the card stays open
    steps = [step_setup, step_layout, step_layout_more, step_tab, step_widen_sidebar,
             step_park, step_ready]
elif MODE == "preferences":
    steps = [step_setup_preferences, step_park_corner, step_ready]
elif MODE == "during":
    steps = [*PREPARE, step_run, step_wait_in_flight, step_ready]
elif MODE in ("after", "texture"):
    steps = [*PREPARE, step_run, step_wait_done, step_show_results, step_show_results_again,
             step_park, step_ready]
else:
    raise SystemExit(f"unknown mode {MODE!r}: before, during, after, texture, directory, "
                     f"workspace or preferences")

log("mode", MODE, "cache", CACHE or "(preferences' default)")
bpy.app.timers.register(tick, first_interval=0.5)
