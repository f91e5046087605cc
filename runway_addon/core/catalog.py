"""Model cards and the catalog: what a model is, who made it, what it costs, and
where it runs; loaded from ``card.json`` files and searched by words and attributes.

A broken card never takes the catalog down: it is reported (file and field)
and every other card still loads.
"""
from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import RunwayError

TASKS = ("identify", "transform", "generate")


class CatalogError(RunwayError):
    """A card that cannot be read; ``path`` says which."""

    def __init__(self, message: str, *, path: str = "", hint: str = "", details: str = ""):
        super().__init__(message, hint=hint, details=details)
        self.path = path


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Version(_Card):
    version: str
    date: Optional[str] = None  # ISO date, or a year-month when that is all that is known
    package: Optional[str] = None  # the pinned package that carries this version
    notes: str = ""


class ModelFile(_Card):
    """A checkpoint or data file the model loads (weights come from packages)."""

    file: str
    size_bytes: Optional[int] = Field(default=None, ge=0)
    package: Optional[str] = None
    path_in_env: Optional[str] = None
    note: str = ""


class GalleryItem(_Card):
    file: str  # relative to the card's folder
    caption: str = ""


class LicencePart(_Card):
    component: str
    spdx: str
    note: str = ""


class CommercialUse(_Card):
    allowed: bool  # may a studio ship work made with it?
    note: str = ""  # the conditions or the restriction, in words


class Licence(_Card):
    code: list[LicencePart]
    weights: list[LicencePart]
    commercial_use: CommercialUse
    summary: str


class Publisher(_Card):
    name: str
    role: str = ""
    url: Optional[str] = None


class Attribution(_Card):
    authors: str
    title: str
    venue: Optional[str] = None
    year: Optional[int] = None
    url: Optional[str] = None


class Characteristics(_Card):
    published: Optional[str] = None
    updated: Optional[str] = None
    # "image", or "image (alpha matte, 8-bit grey PNG)": the first word is the type.
    input_types: list[str]
    output_types: list[str]
    environment_size_bytes: Optional[int] = Field(default=None, ge=0)
    environment_size: str = ""
    cpu: bool = True
    gpu: bool = False
    gpu_note: str = ""
    licence_name: str = ""

    @staticmethod
    def _kinds(types: list[str]) -> set[str]:
        return {t.split(" ", 1)[0].lower() for t in types}

    def input_kinds(self) -> set[str]:
        return self._kinds(self.input_types)

    def output_kinds(self) -> set[str]:
        return self._kinds(self.output_types)


class PerformanceNote(_Card):
    what: str
    value: str


class Performance(_Card):
    measured_on: str = ""
    notes: list[PerformanceNote] = Field(default_factory=list)


class RuntimeInfo(_Card):
    """How the model folder runs (see models/README.md)."""

    protocol: Literal["cog-http"] = "cog-http"
    cog: str
    python: str
    predictor: str
    lock: str = "requirements.lock"
    schema_file: str = Field(default=".cog/openapi_schema.json", alias="schema")
    docker: Optional[str] = None
    network_at_run_time: bool = False


class ModelCard(_Card):
    card_format: Literal[1] = 1
    name: str  # the id: the model folder's name
    title: str
    task: Literal["identify", "transform", "generate"]
    overview: str
    versions: list[Version] = Field(default_factory=list)
    files: list[ModelFile] = Field(default_factory=list)
    licence: Licence
    publishers: list[Publisher] = Field(default_factory=list)
    attributions: list[Attribution] = Field(default_factory=list)
    characteristics: Characteristics
    keywords: list[str] = Field(default_factory=list)
    performance: Performance = Field(default_factory=Performance)
    # label -> URLs, e.g. {"code": [...], "paper": [...], "model_card": [...]}
    links: dict[str, list[str]] = Field(default_factory=dict)
    gallery: list[GalleryItem] = Field(default_factory=list)
    runtime: Optional[RuntimeInfo] = None
    # Set by the loader, never read from the file: the folder the card came from.
    folder: Optional[str] = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name_is_a_safe_folder_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", v):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-' (1-64)")
        return v

    @property
    def runnable(self) -> bool:
        return bool(self.folder) and (Path(self.folder) / "cog.yaml").is_file()

    def gallery_paths(self) -> list[Path]:
        """Gallery files that exist, inside the card's folder only."""
        if not self.folder:
            return []
        base = Path(self.folder).resolve()
        out = []
        for item in self.gallery:
            p = (base / item.file).resolve()
            if base in p.parents and p.is_file():
                out.append(p)
        return out

    def text(self) -> str:
        """Everything a word search looks at, lower-cased."""
        parts = [self.name, self.title, self.overview, self.task, *self.keywords,
                 *(p.name for p in self.publishers), *(a.authors for a in self.attributions),
                 *(a.title for a in self.attributions), *self.characteristics.input_types,
                 *self.characteristics.output_types, self.licence.summary]
        return " ".join(parts).lower()


def _describe_validation(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(card)'}: {e['msg']}"
                     for e in exc.errors())


def load_card(path: Path | str) -> ModelCard:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"Cannot read the model card {path}: {exc.strerror or exc}.",
                           path=str(path)) from exc
    except ValueError as exc:
        raise CatalogError(f"The model card {path} is not valid JSON ({exc}).", path=str(path),
                           hint="Fix the file or remove it; the other models still load.") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"The model card {path} is not a JSON object.", path=str(path))
    data.pop("folder", None)  # never trusted from the file
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"The model card {path} is invalid: {_describe_validation(exc)}.",
                           path=str(path),
                           hint="Fix those fields; the other models still load.") from exc
    card.folder = str(path.parent)
    return card


class Catalog:
    """All cards found under some folders (each ``*/card.json``), plus what failed."""

    def __init__(self, cards: Iterable[ModelCard] = (), errors: Iterable[CatalogError] = ()):
        self.cards = sorted(cards, key=lambda c: c.title.lower())
        self.errors = list(errors)

    @classmethod
    def load(cls, folders: Iterable[Path | str]) -> "Catalog":
        cards, errors, seen = [], [], {}
        for folder in folders:
            for path in sorted(Path(folder).glob("*/card.json")):
                try:
                    card = load_card(path)
                except CatalogError as exc:
                    errors.append(exc)
                    continue
                if card.name in seen:
                    errors.append(CatalogError(
                        f"Two model cards share the name {card.name!r}: {seen[card.name]} and {path}; "
                        f"the first one is kept.", path=str(path)))
                    continue
                seen[card.name] = path
                cards.append(card)
        return cls(cards, errors)

    def get(self, name: str) -> ModelCard:
        for card in self.cards:
            if card.name == name:
                return card
        raise KeyError(f"no model {name!r} in the catalog")

    def publishers(self) -> list[str]:
        return sorted({p.name for c in self.cards for p in c.publishers})

    def keywords(self) -> list[str]:
        return sorted({k for c in self.cards for k in c.keywords})

    def search(self, words: str = "", *, task: Optional[str] = None,
               input_type: Optional[str] = None, output_type: Optional[str] = None,
               cpu: Optional[bool] = None, gpu: Optional[bool] = None,
               commercial_use: Optional[bool] = None, publisher: Optional[str] = None,
               keyword: Optional[str] = None) -> list[ModelCard]:
        """Cards matching every given filter and every word (best matches first:
        a word in the title or keywords counts more than one in the overview)."""
        terms = [t for t in re.split(r"\s+", words.lower().strip()) if t]
        hits = []
        for card in self.cards:
            ch = card.characteristics
            if task and card.task != task:
                continue
            if input_type and input_type.lower() not in ch.input_kinds():
                continue
            if output_type and output_type.lower() not in ch.output_kinds():
                continue
            if cpu is not None and ch.cpu != cpu:
                continue
            if gpu is not None and ch.gpu != gpu:
                continue
            if commercial_use is not None and card.licence.commercial_use.allowed != commercial_use:
                continue
            if publisher and publisher not in {p.name for p in card.publishers}:
                continue
            if keyword and keyword.lower() not in {k.lower() for k in card.keywords}:
                continue
            text = card.text()
            if not all(t in text for t in terms):
                continue
            strong = (card.title + " " + " ".join(card.keywords)).lower()
            score = sum(2 if t in strong else 1 for t in terms)
            hits.append((-score, card.title.lower(), card))
        return [c for *_, c in sorted(hits, key=lambda h: h[:2])]


def builtin_models_dir() -> Optional[Path]:
    """The shelf of models shipped with the add-on: ``models/`` inside the
    installed extension, or at the top of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    candidates = [package / "models"]
    if (package.parent / "build.py").is_file():  # running from the repository
        candidates.append(package.parent / "models")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def load_spec(card: ModelCard):
    """The model's spec from the schema file its folder carries (no server needed):
    what the Run panel builds its widgets from. CatalogError when it cannot be read."""
    if not card.folder or card.runtime is None:
        raise CatalogError(f"model {card.name!r} has no folder with a schema",
                           path=card.folder or "")
    return load_folder_spec(card.folder, card.runtime.schema_file)


def load_folder_spec(folder, schema_file: str = ".cog/openapi_schema.json"):
    """The spec of a Cog model folder, from its OpenAPI schema file."""
    from .protocols.cog import spec_from_openapi

    path = Path(folder) / schema_file
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        return spec_from_openapi(schema)
    except (OSError, ValueError, RunwayError) as e:
        raise CatalogError(f"cannot read the model's schema {str(path)!r}: {e}", path=str(path),
                           hint="Write it with 'build.py models schema'.") from e
