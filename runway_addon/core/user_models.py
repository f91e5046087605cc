"""Models the user adds: a model folder (a Cog predictor), a Docker image, a
running model server URL or a Replicate model, each turned into a model card pre-filled from what
the source says, editable, and stored as a user card in the user folder (beside
the workspaces): ``<user models folder>/<name>/card.json`` plus ``spec.json``
(the model's spec, so the Run panel builds its widgets without reaching the
source). Nothing here imports bpy.

    card, spec = card_from_folder("/path/to/model")      # .cog schema, or started once
    card["title"] = "My Edges"                           # edit what you like
    path = save_user_card(user_models_dir, card, spec)   # validated, then written
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Mapping, Optional

from .catalog import USER_SPEC_FILE, CatalogError, ModelCard, _describe_validation
from .errors import RunwayError
from .spec import ModelSpec

COG_SCHEMA = Path(".cog") / "openapi_schema.json"


class UserModelError(RunwayError):
    """A source that cannot become a model (what is wrong, and what to do)."""


def slug(text: str) -> str:
    """A card name (``ModelCard.name``) from any text."""
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return (s or "model")[:64]


def unique_name(base: str, taken) -> str:
    taken, name, n = set(taken), slug(base), 2
    while name in taken:
        suffix = f"-{n}"
        name, n = slug(base)[:64 - len(suffix)] + suffix, n + 1
    return name


def _kind(f) -> str:
    """The first word of a card's input/output type for a spec field."""
    if f.type == "file" and f.media in ("audio", "video", "image", "text"):
        return f.media if f.media != "image" else "image"
    if f.type == "array":
        return _kind(f.item)
    return f.type


def field_types(fields) -> list[str]:
    """Card types (``"image"``, ``"audio (file: output)"``) for spec fields, once each."""
    out = []
    for f in fields:
        k = _kind(f)
        label = k if k == f.type else f"{k} ({f.type})"
        if label not in out:
            out.append(label)
    return out


def guess_task(spec: ModelSpec) -> str:
    """transform (image in, image out), generate (no image in), identify (the rest)."""
    cmd = spec.command()
    ins = {_kind(f) for f in cmd.inputs}
    outs = {_kind(f) for f in cmd.outputs}
    if "image" in ins and outs & {"image", "video", "file"}:  # a Cog Path is often an image
        return "transform"
    if "image" not in ins and "video" not in ins:
        return "generate"
    return "identify"


def _title(name: str) -> str:
    words = re.sub(r"[-_.]+", " ", name).strip()
    return (words[:1].upper() + words[1:]) or "My model"


def _docstring(predict_py: Path) -> str:
    """The predictor's class or module docstring, if it has one."""
    try:
        tree = ast.parse(predict_py.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return ""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and ast.get_docstring(node):
            return ast.get_docstring(node) or ""
    return ast.get_docstring(tree) or ""


def prefilled_card(name: str, title: str, spec: ModelSpec, source: dict, *,
                   overview: str = "", gpu: Optional[bool] = None) -> dict:
    """A card (as a dict, ready to edit) from what the source told: types from the
    spec, the licence marked as not stated (so commercial use is not assumed)."""
    cmd = spec.command()
    overview = (overview or cmd.description or "").strip() or \
        f"A model you added from {source['kind']} {source['value']}."
    return {
        "card_format": 1, "name": slug(name), "title": title[:120],
        "short_title": title[:24] if len(title) > 24 else None,
        "task": guess_task(spec), "overview": overview,
        "licence": {
            "code": [{"component": "model code", "spdx": "NOASSERTION"}],
            "weights": [{"component": "weights", "spdx": "NOASSERTION"}],
            "commercial_use": {"allowed": False, "note": "Not stated by the source: check the "
                               "model's licence before using results commercially."},
            "summary": "Licence not stated (a model you added)"},
        "characteristics": {
            "input_types": field_types(cmd.inputs) or ["none"],
            "output_types": field_types(cmd.outputs) or ["any"],
            "cpu": True, "gpu": bool(gpu if gpu is not None else spec.gpu)},
        "keywords": ["added by you"],
        "source": dict(source, added=date.today().isoformat()),
    }


# ----------------------------------------------------------------------------- sources

def schema_by_inspecting(folder: Path, *, env_root=None, timeout: float = 600.0,
                         write: bool = True) -> dict:
    """The folder has no ``.cog/openapi_schema.json``: create the model's own
    environment once (as the local-process runtime does, shared with it), ask
    Cog's inspector inside it (``core/cog_inspect.py``, what ``cog build`` does)
    and, with ``write``, keep the schema in the folder's ``.cog/`` as ``cog build``
    would: the Cog server needs that file to serve the model."""
    import subprocess

    from .runtimes.process import ModelEnvironment, default_cache_dir

    env = ModelEnvironment(folder, env_root or default_cache_dir() / "model-envs")
    env.ensure()
    run_env = dict(os.environ, PYTHONWARNINGS="ignore")
    run_env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run([str(env.python), str(Path(__file__).with_name("cog_inspect.py")),
                               str(folder)], cwd=folder, env=run_env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise UserModelError(f"Reading the model's inputs in {folder} took over {timeout:.0f} s.",
                             hint="Check that importing predict.py does not download or "
                                  "wait.") from e
    if proc.returncode != 0:
        raise UserModelError(f"The predictor in {folder} could not be inspected.",
                             hint="Check that predict.py imports and defines a Predictor.",
                             details=proc.stderr[-4000:])
    try:
        schema = json.loads(proc.stdout)
    except ValueError as e:
        raise UserModelError(f"The predictor in {folder} gave no schema ({e}).",
                             details=proc.stderr[-4000:]) from e
    if write:
        (folder / COG_SCHEMA).parent.mkdir(exist_ok=True)
        _write_atomic(folder / COG_SCHEMA, json.dumps(schema, indent=2))
    return schema


def card_from_folder(folder, *, start_if_needed: bool = True, timeout: float = 600.0,
                     env_root=None) -> tuple[dict, ModelSpec]:
    """A model folder: a Cog predictor (``cog.yaml`` + ``predict.py``). Its schema
    from ``.cog/openapi_schema.json``, else from the predictor itself, inspected
    in its own environment (``schema_by_inspecting``)."""
    from .protocols.cog import spec_from_openapi
    from .runtimes.cog_yaml import load_cog_yaml

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise UserModelError(f"{folder} is not a folder.", hint="Choose the model's folder.")
    if (folder / "runway.yml").is_file() and not (folder / "cog.yaml").is_file():
        raise UserModelError(f"{folder} is a Runway Model SDK folder, which the local runtime "
                             f"cannot run yet.",
                             hint="Start it yourself and add its URL instead.")
    if not (folder / "cog.yaml").is_file():
        raise UserModelError(f"{folder} has no cog.yaml.",
                             hint="Choose a folder that holds cog.yaml and predict.py.")
    cog = load_cog_yaml(folder)
    predictor = cog.predict
    schema_path = folder / COG_SCHEMA
    if schema_path.is_file():
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserModelError(f"{schema_path} cannot be read ({e}).",
                                 hint="Remove it to let the add-on ask the model.") from e
    elif start_if_needed:
        schema = schema_by_inspecting(folder, env_root=env_root, timeout=timeout)
    else:
        raise UserModelError(f"{folder} has no {COG_SCHEMA.as_posix()}.",
                             hint="Let the add-on start the model once to ask for it.")
    spec = spec_from_openapi(schema)
    predict_file = folder / predictor.split(":", 1)[0]
    card = prefilled_card(folder.name, _title(folder.name), spec,
                          {"kind": "folder", "value": str(folder)},
                          overview=_docstring(predict_file), gpu=cog.gpu)
    return card, spec


def card_from_url(url: str, *, token: Optional[str] = None,
                  timeout: float = 30.0) -> tuple[dict, ModelSpec]:
    """A running model server (Cog, Runway SDK or hosted): protocol detected, spec asked."""
    from .client import connect

    url = url.strip().rstrip("/")
    if not re.match(r"https?://", url):
        raise UserModelError(f"{url!r} is not an http:// or https:// address.",
                             hint="For example http://127.0.0.1:5000")
    with connect(url, token=token, timeout=timeout) as client:
        spec = client.spec()
        protocol = getattr(spec.protocol, "value", str(spec.protocol))
    host = re.sub(r"^https?://", "", url).split("/", 1)[0]
    name = host.replace(":", "-")
    card = prefilled_card(f"server-{name}", f"Model at {host}", spec,
                          {"kind": "url", "value": url, "protocol": protocol})
    return card, spec


COG_SCHEMA_LABEL = "run.cog.openapi_schema"  # what `cog build` writes into an image
COG_CONFIG_LABEL = "run.cog.config"  # its cog.yaml, as JSON


def _image_labels(client, image: str, pull: bool) -> dict:
    """The labels of ``image`` on the engine, pulling it first when it is missing."""
    import docker.errors

    try:
        return client.images.get(image).labels or {}
    except docker.errors.ImageNotFound:
        if not pull:
            raise UserModelError(f"The Docker image {image} is not on this machine.",
                                 hint="Check the name (docker images lists them), or let "
                                      "the add-on pull it.") from None
    except docker.errors.APIError as e:
        raise UserModelError(f"Docker could not read the image {image}: {e.explanation or e}",
                             hint="Check the image name.") from e
    try:
        return client.images.pull(image).labels or {}
    except (docker.errors.APIError, docker.errors.DockerException) as e:
        raise UserModelError(f"The Docker image {image} is not on this machine and could not "
                             f"be pulled: {getattr(e, 'explanation', None) or e}",
                             hint="Check the name, your network and your registry login.") from e


def spec_by_starting(image: str, *, docker_host: Optional[str] = None,
                     timeout: float = 600.0, owner: Optional[str] = None) -> ModelSpec:
    """An image without the schema label: start it once (the Docker runtime: port
    on 127.0.0.1 only, every safety of a normal run), ask its spec, stop it."""
    from .runtimes.docker import DockerSession

    session = DockerSession(slug(image.rsplit("/", 1)[-1].split(":", 1)[0]), image,
                            docker_host=docker_host, pull=False, share_files=False,
                            owner=owner)
    try:
        session.start(timeout=timeout)
        with session.client() as client:
            return client.spec()
    finally:
        session.stop()


def card_from_image(image: str, *, docker_host: Optional[str] = None, pull: bool = True,
                    timeout: float = 600.0, owner: Optional[str] = None
                    ) -> tuple[dict, ModelSpec]:
    """A Docker image already on this machine or pullable (a Cog image): the spec
    from its ``run.cog.openapi_schema`` label when present, otherwise by
    starting it once and asking (``spec_by_starting``)."""
    from .protocols.cog import spec_from_openapi
    from .runtimes.docker import connect_engine

    image = image.strip()
    if not re.fullmatch(r"[\w][\w.:/@+-]*", image):
        raise UserModelError(f"{image!r} is not a Docker image name.",
                             hint="For example runway-for-blender/upscale:latest or "
                                  "owner/model:tag.")
    client = connect_engine(docker_host)
    try:
        labels = _image_labels(client, image, pull)
    finally:
        client.close()
    label = (labels.get(COG_SCHEMA_LABEL) or "").strip()
    if label:
        try:
            spec = spec_from_openapi(json.loads(label))
        except ValueError as e:
            raise UserModelError(f"The image {image} carries a schema label that is not "
                                 f"JSON ({e}).", hint="Rebuild the image with cog build.") from e
    else:
        spec = spec_by_starting(image, docker_host=docker_host, timeout=timeout, owner=owner)
    try:
        build = json.loads(labels.get(COG_CONFIG_LABEL) or "{}").get("build") or {}
    except (ValueError, AttributeError):
        build = {}
    base = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    card = prefilled_card(base, _title(base), spec,
                          {"kind": "image", "value": image, "protocol": "cog"},
                          gpu=bool(build.get("gpu")) if isinstance(build, dict) else None)
    return card, spec


def card_from_replicate(ref: str, *, token: Optional[str] = None,
                        **options) -> tuple[dict, ModelSpec]:
    """A Replicate model (``owner/name[:version]`` or ``deployment:owner/name``)."""
    from .client import connect

    ref = ref.strip()
    with connect(ref, protocol="replicate", token=token, **options) as client:
        spec = client.spec()
    base = ref.split(":", 1)[1] if ref.startswith("deployment:") else ref.split(":", 1)[0]
    card = prefilled_card(base.replace("/", "-"), base, spec,
                          {"kind": "replicate", "value": ref, "protocol": "replicate"})
    card["publishers"] = [{"name": base.split("/", 1)[0], "role": "on Replicate",
                           "url": f"https://replicate.com/{base}"}]
    return card, spec


# ----------------------------------------------------------------------------- storing

def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def validate_card(card: dict) -> ModelCard:
    """The card as the catalog will read it; CatalogError naming each bad field."""
    from pydantic import ValidationError

    if not isinstance(card, Mapping):
        raise CatalogError(f"The model card is {type(card).__name__}, not an object of fields.",
                           hint="Fill in the card's fields.")
    data = {k: v for k, v in card.items() if k not in ("folder", "card_dir") and v is not None}
    try:
        return ModelCard.model_validate(data)
    except RecursionError:
        raise CatalogError("The model card is nested too deeply to read.",
                           hint="Fix the fields that nest lists or objects in each other.") \
            from None
    except ValidationError as e:
        raise CatalogError(f"The model card is invalid: {_describe_validation(e)}.",
                           hint="Fix those fields.") from e


def save_user_card(models_dir, card: dict, spec: Optional[ModelSpec] = None, *,
                   taken=(), replace: bool = False) -> Path:
    """Validate and write ``<models_dir>/<name>/card.json`` (and ``spec.json``).
    A name in ``taken`` (or an existing folder, unless ``replace``) gets a suffix."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    card = dict(card)
    if not replace:
        existing = {p.name for p in models_dir.iterdir()} | set(taken)
        card["name"] = unique_name(card.get("name") or "model", existing)
    validated = validate_card(card)
    folder = models_dir / validated.name
    folder.mkdir(exist_ok=True)
    if spec is not None:
        _write_atomic(folder / USER_SPEC_FILE, spec.model_dump_json(indent=1))
    _write_atomic(folder / "card.json",
                  json.dumps(validated.model_dump(mode="json", by_alias=True,
                                                  exclude_none=True), indent=1))
    return folder / "card.json"


def remove_user_card(models_dir, name: str) -> None:
    """Forget a model the user added (the card and its saved spec; never the
    model's own folder)."""
    import shutil

    folder = Path(models_dir) / slug(name)
    if folder.is_dir() and (folder / "card.json").is_file() and \
            Path(models_dir).resolve() in folder.resolve().parents:
        shutil.rmtree(folder)


def edit_user_card(card_json, **changes: Any) -> Path:
    """Change fields of a saved user card (validated before anything is written)."""
    path = Path(card_json)
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    validated = validate_card(data)
    _write_atomic(path, json.dumps(validated.model_dump(mode="json", by_alias=True,
                                                        exclude_none=True), indent=1))
    return path
