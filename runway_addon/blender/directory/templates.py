"""A card's templates: example inputs loaded into the Run panel."""
import bpy
from bpy.props import IntProperty, StringProperty

from ...core.errors import RunwayError
from ..reports import report_error
from .listing import card_named


def _template(model: str, index: int):
    """(card, template) for the example ``index`` of ``model``'s card; (card, None)
    when it has no such example."""
    card = card_named(model)
    ok = card is not None and 0 <= index < len(card.templates)
    return card, (card.templates[index] if ok else None)


class RUNWAY_OT_template_load(bpy.types.Operator):
    """Load this example's inputs into the Run panel (a picture becomes its image input)"""

    bl_idname = "runway.template_load"
    bl_label = "Use Example"
    bl_options = {"INTERNAL", "UNDO"}

    model: StringProperty(options={"SKIP_SAVE"})
    index: IntProperty(options={"SKIP_SAVE"})

    @classmethod
    def description(cls, context, properties):
        t = _template(properties.model, properties.index)[1]
        if t is None:
            return "Load the example's inputs into the Run panel"
        return f"Sets {', '.join(t.inputs)} in the Run panel" + (f"\n{t.note}" if t.note else "")

    def execute(self, context):
        try:
            names = load_template(context, self.model, self.index)
        except RunwayError as e:
            return report_error(self, e)
        self.report({"INFO"}, f"Set {', '.join(names)} of {self.model}")
        return {"FINISHED"}


def load_template(context, model: str, index: int) -> list:
    """Set the Run panel's inputs of ``model`` from its card's template ``index``:
    values into the widgets, a picture loaded as an image (once) and chosen as
    that input's Image source. The names that were set."""
    from .. import props
    (card, template), mp = _template(model, index), props.model(model)
    s = props.settings(context.scene, model)
    if template is None:
        raise RunwayError(f"{model!r} has no example {index + 1}.")
    if mp is None or mp.cls is None or s is None:
        raise RunwayError(f"{model!r} cannot run here: {mp.error if mp else 'not loaded'}",
                          hint="Refresh the Model Directory.")
    fields = {f.name: f for f in mp.command.inputs}
    for name, value in template.inputs.items():
        f = fields.get(name)
        if f is None:
            raise RunwayError(f"The example {template.title!r} sets {name!r}, which "
                              f"{card.title} has no input for.", hint="Fix the model card.")
        if f.type in ("image", "file"):
            path = card.card_file(value)
            if path is None:
                raise RunwayError(f"The example {template.title!r} names {value!r}, which is "
                                  f"not a file of the card.", hint="Fix the model card.")
            if f.type == "file":
                setattr(s, props.prop_id("in", name), str(path))
                continue
            image = bpy.data.images.load(str(path), check_existing=True)
            setattr(s, props.prop_id("in", name, "src"), "IMAGE")
            setattr(s, props.prop_id("in", name, "image"), image)
            continue
        if f.type == "text":
            setattr(s, props.prop_id("in", name, "src"), "TYPED")
        props.set_value(mp, s, "in", f, value)
    return list(template.inputs)
