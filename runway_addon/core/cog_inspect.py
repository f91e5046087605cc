"""The OpenAPI schema of a Cog predictor (``.cog/openapi_schema.json``), read from the
predictor by cog's own inspector. One script for both users: ``build.py models schema``
and the add-on, when a model folder the user adds has no schema (run inside the
model's environment, standard library and cog only).

The Cog server reads that file to serve GET /openapi.json and to validate
inputs; the Go ``cog build`` normally writes it, but the Go CLI is not on the
package index. cog 0.23.1's Python package has the same inspector the server
uses (``cog._inspector.create_predictor``, which gives each input's type and
constraints and the output's JSON type); this module assembles the OpenAPI
3.0.2 document around it in the layout cog-http.md describes.

It must run in a Python that has cog AND the model's own packages (importing
predict.py imports them): ``buildtools/cogmodels.py schema`` runs it as
``ENV/bin/python runway_addon/core/cog_inspect.py MODEL_DIR`` and reads stdout.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path



def _predictor_ref(model_dir: Path) -> tuple[str, str]:
    """``("predict", "Predictor")`` from cog.yaml, read by the runtime's own reader,
    loaded by its path: this script runs outside the add-on's package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "runway_cog_yaml", Path(__file__).with_name("runtimes") / "cog_yaml.py")
    cog_yaml = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = cog_yaml  # dataclasses look their module up
    spec.loader.exec_module(cog_yaml)
    config = cog_yaml.parse_cog_yaml((model_dir / "cog.yaml").read_text(encoding="utf-8"))
    module, name = config.predictor
    if not module or not name:
        raise SystemExit(f"{model_dir}/cog.yaml has no predict: line")
    return module, name


def _title(name: str) -> str:
    return name.replace("_", " ").title()


def _accepts(module, predictor_name: str) -> dict[str, str]:
    """``Input(accept=...)`` per input: the inspector keeps it out of InputField."""
    import inspect

    from cog import _inspector
    from cog.input import FieldInfo

    p = getattr(module, predictor_name)
    fn = p
    if inspect.isclass(p):  # the same choice of run()/predict() the server makes
        _, fn = _inspector._selected_predict_method(p, f"{module.__name__}.{predictor_name}")
    out = {}
    for name, param in inspect.signature(fn).parameters.items():
        if isinstance(param.default, FieldInfo) and param.default.accept:
            out[name] = param.default.accept
    return out


# A richer type than JSON schema can state (a box, landmarks with their labels and
# connections, a segmentation map), declared in predict.py as
#   RUNWAY_OUTPUTS = {"boxes": {"type": "array", "item": {"name": "box",
#                                                         "type": "image_bounding_box"}}}
# (and RUNWAY_INPUTS), each a core.spec field without its name. It travels in the
# schema under this key, which the add-on's Cog client reads; Cog ignores it.
RICH_TYPE_KEY = "x-runway"


def _with_rich_outputs(output: dict, rich: dict) -> dict:
    if not rich:
        return output
    if output.get("type") == "object" and isinstance(output.get("properties"), dict):
        unknown = set(rich) - set(output["properties"])
        if unknown:
            raise SystemExit(f"RUNWAY_OUTPUTS names outputs the predictor lacks: {sorted(unknown)}")
        for name, field in rich.items():
            output["properties"][name][RICH_TYPE_KEY] = field
        return output
    if set(rich) != {"output"}:
        raise SystemExit("a single-output predictor's RUNWAY_OUTPUTS has one key: 'output'")
    return dict(output, **{RICH_TYPE_KEY: rich["output"]})


def build_schema(model_dir: Path) -> dict:
    import importlib
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # BasePredictor/predict()

    from cog import _adt as adt
    from cog import _inspector

    module_name, predictor_name = _predictor_ref(model_dir)
    sys.modules.pop(module_name, None)  # every model folder has its own predict.py
    sys.path.insert(0, str(model_dir))
    try:
        info = _inspector.create_predictor(module_name, predictor_name)
        module = importlib.import_module(module_name)
        accepts = _accepts(module, predictor_name)
        rich_inputs = getattr(module, "RUNWAY_INPUTS", {})
        rich_outputs = getattr(module, "RUNWAY_OUTPUTS", {})
    finally:
        sys.path.remove(str(model_dir))

    components: dict[str, dict] = {}
    props: dict[str, dict] = {}
    required: list[str] = []
    optional = (adt.Repetition.OPTIONAL, adt.Repetition.OPTIONAL_REPEATED)
    for name, f in sorted(info.inputs.items(), key=lambda kv: kv[1].order):
        jt = f.type.json_type()
        if f.choices is not None:
            # Choices become a named enum component referenced through allOf.
            enum = dict(jt, title=name, description="An enumeration.", enum=list(f.choices))
            components[name] = enum
            prop: dict = {"allOf": [{"$ref": f"#/components/schemas/{name}"}]}
        else:
            prop = dict(jt, title=_title(name))
        if f.description:
            prop["description"] = f.description
        if f.default is not None:
            prop["default"] = f.type.json_encode(f.default)
        elif f.type.repetition not in optional:
            required.append(name)
        if f.type.repetition in optional:
            prop["nullable"] = True
        for key, value in (("minimum", f.ge), ("maximum", f.le), ("minLength", f.min_length),
                           ("maxLength", f.max_length), ("pattern", f.regex)):
            if value is not None:
                if key in ("minimum", "maximum") and f.type.primitive is adt.PrimitiveType.INTEGER:
                    value = int(value)
                prop[key] = value
        if f.deprecated:
            prop["deprecated"] = True
        if name in accepts:
            prop["x-cog-accept"] = accepts[name]
        if name in rich_inputs:
            prop[RICH_TYPE_KEY] = rich_inputs[name]
        prop["x-order"] = f.order
        props[name] = prop

    inp = {"title": "Input", "type": "object", "properties": props}
    if required:
        inp["required"] = required
    components["Input"] = inp
    components["Output"] = _with_rich_outputs(info.output.json_type(), rich_outputs)
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {
            "/predictions": {"post": {
                "summary": "Predict",
                "requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictionRequest"}}}},
                "responses": {"200": {"description": "Successful Response", "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/PredictionResponse"}}}}},
            }},
        },
        "components": {"schemas": {
            **components,
            "PredictionRequest": {"title": "PredictionRequest", "type": "object", "properties": {
                "id": {"title": "Id", "type": "string"},
                "input": {"$ref": "#/components/schemas/Input"}}},
            "PredictionResponse": {"title": "PredictionResponse", "type": "object", "properties": {
                "id": {"title": "Id", "type": "string"},
                "output": {"$ref": "#/components/schemas/Output"},
                "status": {"title": "Status", "type": "string"},
                "error": {"title": "Error", "type": "string"},
                "logs": {"title": "Logs", "type": "string", "default": ""}}},
        }},
    }


def main(argv: list[str]) -> int:
    """Print the schema of the model folder ``argv[0]`` (run inside its environment)."""
    if len(argv) != 1:
        print("usage: python cog_inspect.py MODEL_DIR", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(build_schema(Path(argv[0]).resolve()), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
