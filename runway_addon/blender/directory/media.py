"""A card's gallery: thumbnails (loaded once each), a picture enlarged in a popup
or an Image Editor, and a speech sample played through Blender's audio device."""
import bpy
import bpy.utils.previews
from bpy.props import BoolProperty, StringProperty

from ...core import catalog as core_catalog
from ..layout import wrapped
from .listing import card_named


_media = {"previews": None}


def _icon_id(path) -> int:
    """The preview icon of a picture, loaded once."""
    if _media["previews"] is None:
        _media["previews"] = bpy.utils.previews.new()
    pcoll, key = _media["previews"], str(path)
    if key not in pcoll:
        pcoll.load(key, key, "IMAGE")
    return pcoll[key].icon_id


def _gallery(card, sounds: bool) -> list:
    """(path, caption, file) for the card's gallery sounds, or else its pictures."""
    captions = {item.file: item.caption for item in card.gallery}
    out = []
    for path in card.gallery_paths():
        if (path.suffix.lower() in core_catalog.AUDIO_SUFFIXES) == sounds:
            rel = path.relative_to(card.folder).as_posix() if card.folder else path.name
            out.append((path, captions.get(rel, path.name), rel))
    return out


def gallery_icons(card) -> list:
    """(icon_id, caption, file) for the card's gallery images, loaded once each."""
    return [(_icon_id(path), caption, rel) for path, caption, rel in _gallery(card, False)]


def gallery_sounds(card) -> list:
    """(caption, file) for the card's gallery sounds (a speech sample)."""
    return [(caption, rel) for _, caption, rel in _gallery(card, True)]


class _GalleryFile:
    """An operator on one file of a card's gallery (``what`` it is, in words)."""

    bl_options = {"INTERNAL"}
    what = "file"

    model: StringProperty(options={"SKIP_SAVE"})
    file: StringProperty(options={"SKIP_SAVE"})

    def _path(self):
        card = card_named(self.model)
        return card.card_file(self.file) if card else None

    def found(self):
        """The file's path, or None with an ERROR report."""
        path = self._path()
        if path is None:
            self.report({"ERROR"}, f"No {self.what} {self.file!r} in the card of {self.model}")
        return path


class RUNWAY_OT_gallery_view(_GalleryFile, bpy.types.Operator):
    """Show a gallery picture large: a popup, or an Image Editor"""

    bl_idname = "runway.gallery_view"
    bl_label = "Enlarge"
    what = "picture"

    editor: BoolProperty(name="In an Image Editor", options={"SKIP_SAVE"},
                         description="Open the picture in an Image Editor (a new window when "
                                     "none is open) instead of a popup")

    def invoke(self, context, event):
        if self.found() is None:
            return {"CANCELLED"}
        if self.editor:
            return self.execute(context)
        return context.window_manager.invoke_popup(self, width=int(560 * max(
            1.0, context.preferences.system.ui_scale)))

    def draw(self, context):
        card, path = card_named(self.model), self._path()
        if path is None:
            return
        layout = self.layout
        layout.template_icon(icon_value=_icon_id(path), scale=26.0)
        caption = next((g.caption for g in card.gallery if g.file == self.file), "")
        wrapped(layout, caption, context)
        op = layout.operator(self.bl_idname, text="Open in an Image Editor", icon="IMAGE_DATA")
        op.model, op.file, op.editor = self.model, self.file, True

    def execute(self, context):
        """Load the picture as an image (once) and show it in an Image Editor."""
        from .. import outputs
        path = self.found()
        if path is None:
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


class RUNWAY_OT_gallery_play(_GalleryFile, bpy.types.Operator):
    """Play the card's speech sample (again: stop it)"""

    bl_idname = "runway.gallery_play"
    bl_label = "Play Sample"
    what = "sound"

    def execute(self, context):
        import aud  # Blender's own audio library: it plays through Blender's output device
        path = self.found()
        if path is None:
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
