"""Model cards and the catalog: what a model is, who made it, what it costs, and
where it runs; loaded from ``card.json`` files and searched by words and attributes.

A broken card never takes the catalog down: it is reported (file and field)
and every other card still loads.
"""
from __future__ import annotations

import bisect
import collections
import gc
import itertools
import json
import operator
import re
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import NotFound, RunwayError

TASKS = ("identify", "transform", "generate")
# A user card's saved spec (core.spec.ModelSpec as JSON), beside its card.json.
USER_SPEC_FILE = "spec.json"
LIST_TITLE_CHARS = 24  # what the directory's list shows at the default sidebar width


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


class Template(_Card):
    """Example inputs the Run panel can load: input name -> value; for an image or
    file input the value is a file relative to the card's folder (its gallery)."""

    title: str
    inputs: dict[str, Any]
    note: str = ""


AUDIO_SUFFIXES = (".wav", ".ogg", ".flac", ".mp3")


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


SOURCE_KINDS = ("folder", "url", "image", "replicate")


class Source(_Card):
    """Where a model the user added comes from (user cards only): a model folder,
    a running server's URL, a Docker image or a Replicate reference. The
    model's spec is saved beside the card (``spec.json``), so the Run panel
    builds its widgets without reaching the source."""

    kind: Literal["folder", "url", "image", "replicate"]
    value: str
    protocol: Optional[str] = None  # as detected when the model was added (url)
    added: Optional[str] = None  # ISO date


class ModelCard(_Card):
    card_format: Literal[1] = 1
    name: str  # the id: the model folder's name
    title: str
    # What the directory's list shows when the title is long (the title is the tooltip).
    short_title: Optional[str] = Field(default=None, max_length=40)
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
    templates: list[Template] = Field(default_factory=list)
    runtime: Optional[RuntimeInfo] = None
    source: Optional[Source] = None  # a model the user added (user cards)
    # Set by the loader, never read from the file: the folder the model runs from
    # (the card's own folder, or a user card's model folder) and the card's folder.
    folder: Optional[str] = Field(default=None, exclude=True)
    card_dir: Optional[str] = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name_is_a_safe_folder_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", v):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-' (1-64)")
        return v

    @property
    def runnable(self) -> bool:
        if self.source is not None and self.source.kind != "folder":
            # a server, image or Replicate model: runnable once its spec was saved
            return bool(self.card_dir) and (Path(self.card_dir) / USER_SPEC_FILE).is_file()
        return bool(self.folder) and (Path(self.folder) / "cog.yaml").is_file()

    @property
    def list_title(self) -> str:
        """The title for narrow lists (the default sidebar shows about 24 characters):
        the card's short title; else a long title without its parenthesis
        ("Body Pose (MediaPipe BlazePose, full model)" -> "Body Pose"); else the
        title cut at a word."""
        if self.short_title:
            return self.short_title
        if len(self.title) <= LIST_TITLE_CHARS:
            return self.title
        head = self.title.split(" (", 1)[0].split(": ", 1)[0].strip()
        if 0 < len(head) <= LIST_TITLE_CHARS:
            return head
        cut = self.title[:LIST_TITLE_CHARS - 1].rsplit(" ", 1)[0]
        return cut.rstrip(" ,;:-") + "\u2026"

    @property
    def is_user_model(self) -> bool:
        return self.source is not None

    def card_file(self, rel: str) -> Optional[Path]:
        """A file the card names (gallery, templates), if it exists inside the
        card's folder; never a path that leaves it."""
        if not self.folder or not isinstance(rel, str):
            return None
        base = Path(self.folder).resolve()
        p = (base / rel).resolve()
        return p if base in p.parents and p.is_file() else None

    def gallery_paths(self) -> list[Path]:
        """Gallery files that exist, inside the card's folder only."""
        return [p for p in (self.card_file(item.file) for item in self.gallery) if p]

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


_MAX_CARD_BYTES = 16 << 20


def load_card(path: Path | str) -> ModelCard:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_CARD_BYTES + 1)
        if len(raw) > _MAX_CARD_BYTES:
            raise CatalogError(f"The model card {path} is larger than "
                               f"{_MAX_CARD_BYTES >> 20} MB.", path=str(path),
                               hint="A card is a short JSON file; fix or remove it.")
        text = raw.decode("utf-8-sig")
        data = json.loads(text)
    except OSError as exc:
        raise CatalogError(f"Cannot read the model card {path}: {exc.strerror or exc}.",
                           path=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"The model card {path} is not UTF-8 text (byte {exc.start}).",
                           path=str(path), hint="Save it as UTF-8; the other models still "
                                                "load.") from None
    except RecursionError:
        raise CatalogError(f"The model card {path} is nested too deeply to read.",
                           path=str(path), hint="Fix the file or remove it; the other models "
                                                "still load.") from None
    except ValueError as exc:
        raise CatalogError(f"The model card {path} is not valid JSON ({exc}).", path=str(path),
                           hint="Fix the file or remove it; the other models still load.") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"The model card {path} is not a JSON object.", path=str(path))
    data.pop("folder", None)  # never trusted from the file
    try:
        card = ModelCard.model_validate(data)
    except RecursionError:
        raise CatalogError(f"The model card {path} is nested too deeply to read.",
                           path=str(path), hint="Fix the file or remove it; the other models "
                                                "still load.") from None
    except ValidationError as exc:
        raise CatalogError(f"The model card {path} is invalid: {_describe_validation(exc)}.",
                           path=str(path),
                           hint="Fix those fields; the other models still load.") from exc
    card.folder = card.card_dir = str(path.parent)
    if card.source is not None and card.source.kind == "folder":
        card.folder = card.source.value  # a user card: the model runs from its own folder
    return card


def _without_gc(fn):
    """Run ``fn`` with the cyclic garbage collector paused: loading thousands of
    cards makes many small objects and no cycles, and collections triggered by
    the allocations cost more than the parsing (60 % of the load time)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    return wrapper


_RUN = re.compile(r"\w+")


class _WordIndex:
    """Which texts hold a search term, without scanning every text.

    A term made of word characters only (``\\w``: letters, digits, ``_``) can only
    occur inside one maximal run of word characters of a text, so it is looked
    up among the distinct runs of all texts (a few thousand, joined into one
    string and found with ``str.find`` at C speed), each with the positions of
    the texts that hold it. Any other term (rare: "el-0") is checked in the
    texts that the other words and filters left. 10 000 cards: under 3 ms a query, against 7-12 ms
    for scanning every text."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        postings: dict[str, list] = {}
        for i, text in enumerate(texts):
            for run in set(_RUN.findall(text)):
                postings.setdefault(run, []).append(i)
        # frozensets: a term found in one run (the usual case) costs no copy
        self.postings = {run: frozenset(at) for run, at in postings.items()}
        self.runs = list(self.postings)
        self.joined = "\n" + "\n".join(self.runs) + "\n"
        self.starts, pos = [], 1
        for run in self.runs:
            self.starts.append(pos)
            pos += len(run) + 1

    def _runs_containing(self, term: str) -> list[str]:
        out, joined, starts, runs, at = [], self.joined, self.starts, self.runs, 0
        while True:
            at = joined.find(term, at)
            if at < 0:
                return out
            n = bisect.bisect_right(starts, at) - 1
            out.append(runs[n])
            at = starts[n] + len(runs[n]) + 1  # on to the next run

    def holding(self, term: str, within=None) -> frozenset | set:
        """Positions of the texts that contain ``term`` (no whitespace in it); for
        a term with other characters, only those ``within`` are checked."""
        if _RUN.fullmatch(term):
            found = self._runs_containing(term)
            if len(found) == 1:
                return self.postings[found[0]]
            return frozenset().union(*(self.postings[r] for r in found))
        texts = self.texts
        return {i for i in (range(len(texts)) if within is None else within)
                if term in texts[i]}


class _Prepared:
    """What search looks at, computed once per catalog (not once per query): each
    card's lower-cased text and strong text (title and keywords), indexed by word
    (``_WordIndex``), and an index from each filter value to the positions of the
    cards that have it."""

    def __init__(self, cards: list):
        self.text = _WordIndex([c.text() for c in cards])
        self.strong = _WordIndex([(c.title + " " + " ".join(c.keywords)).lower()
                                  for c in cards])
        self.index: dict[tuple, set] = {}
        for i, c in enumerate(cards):
            ch = c.characteristics
            keys = [("task", c.task), ("cpu", ch.cpu), ("gpu", ch.gpu),
                    ("commercial_use", c.licence.commercial_use.allowed)]
            keys += [("input_type", k) for k in ch.input_kinds()]
            keys += [("output_type", k) for k in ch.output_kinds()]
            keys += [("publisher", p.name) for p in c.publishers]
            keys += [("keyword", k.lower()) for k in c.keywords]
            for key in keys:
                self.index.setdefault(key, set()).add(i)


class Catalog:
    """All cards found under some folders (each ``*/card.json``), plus what failed."""

    def __init__(self, cards: Iterable[ModelCard] = (), errors: Iterable[CatalogError] = ()):
        self.cards = sorted(cards, key=lambda c: c.title.lower())
        self.errors = list(errors)
        self._prep: Optional[_Prepared] = None
        self._prep_key: tuple = ()

    def _prepared(self) -> _Prepared:
        key = (id(self.cards), len(self.cards), tuple(id(c) for c in self.cards[:1] + self.cards[-1:]))
        if self._prep is None or self._prep_key != key:
            self._prep, self._prep_key = _Prepared(self.cards), key
        return self._prep

    @classmethod
    @_without_gc
    def load(cls, folders: Iterable[Path | str]) -> "Catalog":
        cards, errors, seen = [], [], {}
        for folder in folders:
            for path in sorted(Path(folder).glob("*/card.json")):
                try:
                    card = load_card(path)
                except CatalogError as exc:
                    errors.append(exc)
                    continue
                except (Exception, RecursionError) as exc:  # noqa: BLE001 (one card only)
                    errors.append(CatalogError(
                        f"The model card {path} cannot be loaded ({type(exc).__name__}).",
                        path=str(path), hint="Fix the file or remove it; the other models "
                                             "still load."))
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
        raise NotFound(f"no model {name!r} in the catalog",
                       hint="Refresh the catalog, or check the model's name.")

    def publishers(self) -> list[str]:
        return sorted({p.name for c in self.cards for p in c.publishers})

    def keywords(self) -> list[str]:
        return sorted({k for c in self.cards for k in c.keywords})

    def search(self, words: str = "", *, task: Optional[str] = None,
               input_type: Optional[str] = None, output_type: Optional[str] = None,
               cpu: Optional[bool] = None, gpu: Optional[bool] = None,
               commercial_use: Optional[bool] = None, publisher: Optional[str] = None,
               keyword: Optional[str] = None, names: Optional[Iterable[str]] = None
               ) -> list[ModelCard]:
        """Cards matching every given filter and every word (best matches first:
        a word in the title or keywords counts more than one in the overview;
        ties by title). ``names``: only these cards (e.g. a workspace's)."""
        prep = self._prepared()
        terms = list(dict.fromkeys(t for t in re.split(r"\s+", words.lower().strip()) if t))
        wanted = [("task", task), ("input_type", input_type and input_type.lower()),
                  ("output_type", output_type and output_type.lower()), ("cpu", cpu),
                  ("gpu", gpu), ("commercial_use", commercial_use), ("publisher", publisher),
                  ("keyword", keyword and keyword.lower())]
        sets = [prep.index.get((k, v), set()) for k, v in wanted
                if v is not None and v != ""]
        if names is not None:
            names = set(names)
            sets.append({i for i, c in enumerate(self.cards) if c.name in names})
        plain = [t for t in terms if _RUN.fullmatch(t)]
        sets += [prep.text.holding(t) for t in plain]
        cards = self.cards
        if not sets and not terms:
            return list(cards)
        if not sets:
            cand = set(range(len(cards)))
        else:
            sets.sort(key=len)
            cand = set(sets[0]).intersection(*sets[1:])
        for t in terms:
            if t not in plain:
                cand = prep.text.holding(t, within=cand)
        if not terms:
            return _picker(cards)(sorted(cand))
        # Score: one point per word, one more per word in the title or keywords;
        # every match holds all the words, so the order is by that bonus, best first.
        # The cards are in title order, so position order within a bonus keeps ties
        # by title. Set operations (C speed), not a sort with a key per card.
        pick = _picker(cards)
        if len(terms) == 1:  # the usual query: title or keyword matches, then the rest
            top = cand & prep.strong.holding(terms[0], within=cand)
            return pick(sorted(top)) + pick(sorted(cand - top))
        bonus = collections.Counter(itertools.chain.from_iterable(
            cand & prep.strong.holding(t, within=cand) for t in terms))
        levels: dict[int, list] = {}
        for i, n in bonus.items():
            levels.setdefault(n, []).append(i)
        out = []
        for n in sorted(levels, reverse=True):
            out += pick(sorted(levels[n]))
        return out + pick(sorted(cand.difference(bonus)))


def _picker(cards: list):
    """``pick(positions)``: the cards at those positions, as a list (itemgetter:
    one C call instead of a Python loop over thousands of matches)."""
    def pick(positions: list) -> list:
        if not positions:
            return []
        got = operator.itemgetter(*positions)(cards)
        return [got] if len(positions) == 1 else list(got)
    return pick


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
    what the Run panel builds its widgets from. CatalogError when it cannot be read.
    A model the user added has its spec saved beside its card (``spec.json``)."""
    if card.source is not None and card.card_dir:
        saved = Path(card.card_dir) / USER_SPEC_FILE
        if saved.is_file() or card.source.kind != "folder" or card.runtime is None:
            return load_saved_spec(saved)
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
    except RecursionError:
        raise CatalogError(f"the model's schema {str(path)!r} is nested too deeply to read",
                           path=str(path), hint="Write it with 'build.py models schema'.") \
            from None
    except (OSError, ValueError, RunwayError) as e:
        raise CatalogError(f"cannot read the model's schema {str(path)!r}: {e}", path=str(path),
                           hint="Write it with 'build.py models schema'.") from e


def load_saved_spec(path):
    """A spec saved as JSON (``ModelSpec.model_dump_json``): user cards."""
    from .spec import ModelSpec

    path = Path(path)
    try:
        return ModelSpec.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CatalogError(f"cannot read the model's saved spec {str(path)!r}: "
                           f"{e.strerror or e}", path=str(path),
                           hint="Add the model again to save its spec.") from e
    except UnicodeDecodeError as e:
        raise CatalogError(f"the model's saved spec {str(path)!r} is not UTF-8 text "
                           f"(byte {e.start})", path=str(path),
                           hint="Add the model again to save its spec.") from None
    except ValidationError as e:
        raise CatalogError(f"the model's saved spec {str(path)!r} is invalid: "
                           f"{_describe_validation(e)}", path=str(path),
                           hint="Add the model again to save its spec.") from e
