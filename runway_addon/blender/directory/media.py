"""A card's gallery: thumbnails (loaded once each), a picture enlarged in a popup
or an Image Editor, and a speech sample played through Blender's audio device."""
import bpy
import bpy.utils.previews
from bpy.props import BoolProperty, StringProperty

from ...core import catalog as core_catalog
from ..layout import wrapped
from .listing import card_named


_media = {"previews": None}


def _previews():
    if _media["previews"] is None:
        _media["previews"] = bpy.utils.previews.new()
    return _media["previews"]


def _rel(card, path) -> str:
    return path.relative_to(card.folder).as_posix() if card.folder else path.name


def gallery_icons(card) -> list:
    """(icon_id, caption, file) for the card's gallery images, loaded once each."""
    pcoll = _previews()
    captions = {item.file: item.caption for item in card.gallery}
    out = []
    for path in card.gallery_paths():
        if path.suffix.lower() in core_catalog.AUDIO_SUFFIXES:
            continue
        key = str(path)
        if key not in pcoll:
            pcoll.load(key, key, "IMAGE")
        rel = _rel(card, path)
        out.append((pcoll[key].icon_id, captions.get(rel, path.name), rel))
    return out


def gallery_sounds(card) -> list:
    """(caption, file) for the card's gallery sounds (a speech sample)."""
    captions = {item.file: item.caption for item in card.gallery}
    return [(captions.get(_rel(card, p), p.name), _rel(card, p)) for p in card.gallery_paths()
            if p.suffix.lower() in core_catalog.AUDIO_SUFFIXES]


class RUNWAY_OT_gallery_view(bpy.types.Operator):
    """Show a gallery picture large: a popup, or an Image Editor"""

    bl_idname = "runway.gallery_view"
    bl_label = "Enlarge"
    bl_options = {"INTERNAL"}

    model: StringProperty(options={"SKIP_SAVE"})
    file: StringProperty(options={"SKIP_SAVE"})
    editor: BoolProperty(name="In an Image Editor", options={"SKIP_SAVE"},
                         description="Open the picture in an Image Editor (a new window when "
                                     "none is open) instead of a popup")

    def _path(self):
        card = card_named(self.model)
        return card.card_file(self.file) if card else None

    def invoke(self, context, event):
        if self._path() is None:
            self.report({"ERROR"}, f"No picture {self.file!r} in the card of {self.model}")
            return {"CANCELLED"}
        if self.editor:
            return self.execute(context)
        return context.window_manager.invoke_popup(self, width=int(560 * max(
            1.0, context.preferences.system.ui_scale)))

    def draw(self, context):
        card, path = card_named(self.model), self._path()
        if path is None:
            return
        pcoll = _previews()
        if str(path) not in pcoll:
            pcoll.load(str(path), str(path), "IMAGE")
        layout = self.layout
        layout.template_icon(icon_value=pcoll[str(path)].icon_id, scale=26.0)
        caption = next((g.caption for g in card.gallery if g.file == self.file), "")
        wrapped(layout, caption, context)
        op = layout.operator(self.bl_idname, text="Open in an Image Editor", icon="IMAGE_DATA")
        op.model, op.file, op.editor = self.model, self.file, True

    def execute(self, context):
        """Load the picture as an image (once) and show it in an Image Editor."""
        from .. import outputs
        path = self._path()
        if path is None:
            self.report({"ERROR"}, f"No picture {self.file!r} in the card of {self.model}")
            return {"CANCELLED"}
        image = bpy.data.images.load(str(path), check_existing=True)
        shown = outputs.show_in_image_editor(image)
        if not shown and not bpy.app.background and bpy.ops.wm.window_new.poll():
            bpy.ops.wm.window_new()  # no Image Editor open: a new window becomes one
            window = context.window_manager.windows[-1]
            area = max(window.screen.areas, key=lambda a: a.width * a.height)
            area.type = "IMAGE_EDITOR"
            area.spaces.active.image = image
            shown = True
        self.report({"INFO"}, f"Showing {image.name}" if shown else
                    f"Loaded the picture as the image {image.name}")
        return {"FINISHED"}


_sound = {"handle": None, "file": "", "device": None}


def playing() -> str:
    """The gallery sound playing now ('' when none)."""
    h = _sound["handle"]
    return _sound["file"] if h is not None and h.status else ""


class RUNWAY_OT_gallery_play(bpy.types.Operator):
    """Play the card's speech sample (again: stop it)"""

    bl_idname = "runway.gallery_play"
    bl_label = "Play Sample"
    bl_options = {"INTERNAL"}

    model: StringProperty(options={"SKIP_SAVE"})
    file: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        import aud  # Blender's own audio library: it plays through Blender's output device
        card = card_named(self.model)
        path = card.card_file(self.file) if card else None
        if path is None:
            self.report({"ERROR"}, f"No sound {self.file!r} in the card of {self.model}")
            return {"CANCELLED"}
        was = playing()
        stop_sound()
        if was == str(path):
            return {"FINISHED"}  # a second click stops it
        if _sound["device"] is None:
            _sound["device"] = aud.Device()
        _sound["handle"] = _sound["device"].play(aud.Sound(str(path)))
        _sound["file"] = str(path)
        return {"FINISHED"}


def stop_sound() -> None:
    h = _sound["handle"]
    if h is not None:
        h.stop()
    _sound.update(handle=None, file="")


def release() -> None:
    """Stop the sample, drop the audio device and the thumbnails (unregister)."""
    stop_sound()
    _sound["device"] = None
    if _media["previews"] is not None:
        bpy.utils.previews.remove(_media["previews"])
        _media["previews"] = None
