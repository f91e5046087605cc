"""The typed model description: labels, lookups by name and their errors."""
import pytest
from pydantic import TypeAdapter, ValidationError

from runway_addon.core.errors import NotFound, RunwayError
from runway_addon.core.spec import (FIELD_TYPES, Command, FieldSpec, ImageField, IntegerField,
                                    ModelSpec, Protocol, TextField)


def model(*commands):
    return ModelSpec(protocol=Protocol.COG, commands=list(commands))


def predict():
    return Command(name="predict",
                   inputs=[ImageField(name="image"), TextField(name="prompt")],
                   outputs=[ImageField(name="result")])


@pytest.mark.parametrize("title, name, label", [
    (None, "style_strength", "Style strength"),   # from the name: underscores, capital
    ("style", "style", "Style"),                  # Cog titles an enum input like the field
    ("Strength of style", "strength", "Strength of style"),
    ("", "seed", "Seed"),
])
def test_label(title, name, label):
    assert TextField(name=name, title=title).label == label


def test_command_inputs_and_outputs_by_name():
    command = predict()
    assert command.input("prompt") is command.inputs[1]
    assert command.input("image") is command.inputs[0]
    assert command.output("result") is command.outputs[0]


def test_unknown_input_and_output_name_the_command_and_the_known_fields():
    command = predict()
    with pytest.raises(NotFound) as err:  # a RunwayError and a KeyError
        command.input("mask")
    assert err.value.args[0] == "unknown command 'predict' input 'mask' (known: image, prompt)"
    with pytest.raises(NotFound) as err:  # a RunwayError and a KeyError
        command.output("image")
    assert err.value.args[0] == "unknown command 'predict' output 'image' (known: result)"


def test_a_command_with_no_outputs_says_none_are_known():
    with pytest.raises(NotFound) as err:  # a RunwayError and a KeyError
        Command(name="run").output("x")
    assert err.value.args[0] == "unknown command 'run' output 'x' (known: none)"


def test_command_by_name_or_the_first():
    first, second = predict(), Command(name="upscale")
    spec = model(first, second)
    assert spec.command() is first
    assert spec.command("upscale") is second
    assert spec.command("predict") is first
    with pytest.raises(NotFound) as err:  # a RunwayError and a KeyError
        spec.command("segment")
    assert err.value.args[0] == "unknown command 'segment' (known: predict, upscale)"


def test_a_model_without_commands_has_no_first_command():
    with pytest.raises(NotFound) as err:  # a RunwayError and a KeyError
        model().command()
    assert err.value.args[0] == "the model declares no commands"


def test_fields_are_told_apart_by_type_and_unknown_keys_refused():
    adapter = TypeAdapter(FieldSpec)
    field = adapter.validate_python({"type": "integer", "name": "steps", "min": 1})
    assert isinstance(field, IntegerField) and field.min == 1 and field.default is None
    assert set(FIELD_TYPES) == {cls.model_fields["type"].default for cls in
                                [type(adapter.validate_python(_minimal(t))) for t in FIELD_TYPES]}
    with pytest.raises(ValidationError, match="colour"):
        adapter.validate_python({"type": "text", "name": "prompt", "colour": "red"})


def _minimal(field_type):
    extra = {"category": {"choices": ["a"]}, "vector": {"length": 2},
             "array": {"item": {"type": "text", "name": "item"}},
             "segmentation": {"labels": ["sky"]}, "image_landmarks": {"length": 5}}
    return {"type": field_type, "name": "f", **extra.get(field_type, {})}


def test_a_missing_name_is_the_projects_own_error_with_a_hint():
    with pytest.raises(NotFound) as err:
        predict().input("mask")
    assert isinstance(err.value, RunwayError) and isinstance(err.value, KeyError)
    assert str(err.value) == ("unknown command 'predict' input 'mask' (known: image, prompt) "
                              "Use one of the names the model declares.")
