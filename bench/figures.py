"""The one Figure type of the benchmarks, the catalogue of figures and goals, and
the table, JSON and PNG plots that ``build.py bench`` writes.

Every benchmark reports through a ``Collector``: ``add()`` a Figure (its samples,
and the baseline measured in the same run), ``skip()`` one it could not measure
(with the reason), ``plot()`` a chart. Goals live here, in CATALOGUE, so the
table, the JSON and the README read the same ones; a figure a benchmark did not
report is listed as "not measured". Standard library plus Pillow (plots only).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Optional

# Goal kinds: "max" value <= x; "min" value >= x; "ratio_max" value/baseline <= x;
# "ratio_min" value/baseline >= x; "over_max" value - baseline <= x; None: report only.
# key -> (title, unit, goal kind, goal threshold)
CATALOGUE: dict[str, tuple] = {
    # The Run path in real Blender (bench_run.py)
    "run.overhead.1080p": ("add-on overhead per frame, identity model, 1080p", "ms", "max", 50),
    "run.peer.1080p": ("peer path per frame vs ours, 1080p", "ms", "ratio_min", 10),
    "run.overhead.4k": ("add-on overhead per frame, identity model, 4K", "ms", "max", 200),
    "run.peer.4k": ("peer path per frame vs ours, 4K", "ms", "ratio_min", 10),
    "run.docker.1080p": ("add-on overhead per frame in Docker vs local process, 1080p", "ms",
                         "ratio_max", 1.5),
    "run.apply.byte.1080p": ("main thread: apply a 1080p 8-bit result", "ms", "max", 30),
    "run.apply.float.1080p": ("main thread: apply a 1080p float result", "ms", "max", 30),
    "run.max_step": ("main thread: longest timer step while a run is in flight", "ms",
                     "max", 5),
    "run.warm_starts": ("warm second run: model starts", "starts", "max", 0),
    "run.memory.4k": ("peak extra memory, 4K round trip, x frame float32 size", "x", "max", 3),
    # Job files and post-processing in real Blender (bench_batch.py)
    "job.replicas1": ("48-frame job, fixed model cost, 1 replica: throughput", "fps",
                      "ratio_min", 0.9),
    "job.replicas2": ("48-frame job, fixed model cost, 2 replicas: throughput", "fps",
                      "ratio_min", 0.9),
    "post.render": ("animation render with post-processing vs alone", "s", "ratio_max", 1.10),
    # Cold start (bench_cold_start.py, bench_cold_start_docker.py)
    "cold.process": ("cold start, local process runtime vs bare server", "ms", "over_max", 300),
    "cold.docker": ("cold start, Docker runtime vs bare container", "ms", "over_max", 300),
    # Catalog (bench_catalog.py, run through its command line)
    "catalog.search": ("directory search over 10 000 cards, worst query", "ms", "max", 10),
    # Codecs (bench_codecs.py): report only, against a numpy copy
    "codecs.srgb.1080p": ("codecs: Blender float -> sRGB, 1080p", "ms", None, None),
    "codecs.png0_uri.1080p": ("codecs: PNG level 0 data URI enc+dec, 1080p", "ms", None, None),
    "codecs.png0_file.1080p": ("codecs: PNG level 0 shared file enc+dec, 1080p", "ms",
                               None, None),
    "codecs.srgb.4k": ("codecs: Blender float -> sRGB, 4K", "ms", None, None),
    "codecs.png0_uri.4k": ("codecs: PNG level 0 data URI enc+dec, 4K", "ms", None, None),
    "codecs.png0_file.4k": ("codecs: PNG level 0 shared file enc+dec, 4K", "ms", None, None),
    # Client overhead (bench_client_overhead.py): report only, against a bare POST
    "client.text": ("client predict_raw, small text input vs bare POST", "ms", None, None),
    "client.image_uri": ("client predict_raw, 1080p data URI vs bare POST", "ms", None, None),
    "client.image_run": ("client run() (encode+decode), 1080p shared path vs bare POST", "ms",
                         None, None),
}
# Soak (bench_soak.py): growth after warm-up, each goal the soak's bound (BOUNDS there)
for _phase, _what in (("runs", "runs on one session"), ("cycles", "process runtime cycles"),
                      ("docker", "Docker runtime cycles")):
    for _res, _unit, _bound in (("fds", "files", 8), ("threads", "threads", 4),
                                ("children", "processes", 0), ("rss_mb", "MB", 64)):
        CATALOGUE[f"soak.{_phase}.{_res}"] = (f"soak, {_what}: {_unit} grown", _unit, "max",
                                              _bound)
# The shelf (bench_models.py): report only, client run() against a bare POST
for _name in ("denoise", "face-detection", "person-segmentation", "pose", "style-transfer",
              "text-to-speech", "upscale"):
    CATALOGUE[f"models.{_name}"] = (f"shelf {_name}: client run() per input vs bare POST",
                                    "s", None, None)


@dataclass
class Figure:
    key: str
    samples: list = field(default_factory=list)
    baseline: list = field(default_factory=list)  # measured in the same run
    baseline_label: str = ""
    title: str = ""
    unit: str = ""
    goal_kind: Optional[str] = None
    goal: Optional[float] = None
    note: str = ""  # what was measured (size, repetitions, ...)
    reason: str = ""  # why it was not measured
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        title, unit, kind, goal = CATALOGUE.get(self.key, (self.key, "", None, None))
        self.title = self.title or title
        self.unit = self.unit or unit
        if self.goal_kind is None and kind is not None:
            self.goal_kind, self.goal = kind, goal
        self.samples = [float(v) for v in self.samples]
        self.baseline = [float(v) for v in self.baseline]

    # -- derived
    @property
    def measured(self) -> bool:
        return bool(self.samples)

    @property
    def value(self) -> Optional[float]:
        return statistics.median(self.samples) if self.samples else None

    @property
    def base(self) -> Optional[float]:
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> Optional[float]:
        if self.value is None or not self.base:
            return None
        return self.value / self.base

    @property
    def held(self) -> Optional[bool]:
        """True/False where the goal can be checked; None for report-only or unmeasured."""
        v, k, g = self.value, self.goal_kind, self.goal
        if v is None or k is None:
            return None
        if k == "max":
            return v <= g
        if k == "min":
            return v >= g
        if k in ("ratio_max", "ratio_min"):
            r = self.ratio
            if r is None:
                return None
            return r <= g if k == "ratio_max" else r >= g
        if k == "over_max":
            return None if self.base is None else v - self.base <= g
        raise ValueError(f"unknown goal kind {k!r}")

    def goal_text(self) -> str:
        k, g = self.goal_kind, self.goal
        if k is None:
            return "report"
        return {"max": f"<= {g:g} {self.unit}", "min": f">= {g:g} {self.unit}",
                "ratio_max": f"ratio <= {g:g}", "ratio_min": f"ratio >= {g:g}",
                "over_max": f"<= baseline + {g:g} {self.unit}"}[k]

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(value=self.value, min=min(self.samples) if self.samples else None,
                 max=max(self.samples) if self.samples else None, baseline_value=self.base,
                 ratio=self.ratio, held=self.held, goal_text=self.goal_text(),
                 measured=self.measured)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Figure":
        names = {"key", "samples", "baseline", "baseline_label", "title", "unit", "goal_kind",
                 "goal", "note", "reason", "params"}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Plot:
    """A chart: ``kind`` "line" (x numeric), "bars" (x categories) or "timeline"
    (each series a list of (t, value) points drawn as spikes)."""
    name: str  # file name without .png
    title: str
    xlabel: str
    ylabel: str
    kind: str = "line"
    series: dict = field(default_factory=dict)  # label -> [[x, y], ...]
    marks: list = field(default_factory=list)  # horizontal lines: [[y, label], ...]


class Collector:
    def __init__(self):
        self.figures: list[Figure] = []
        self.plots: list[Plot] = []

    def add(self, key: str, samples, baseline=(), baseline_label: str = "", note: str = "",
            **params) -> Figure:
        fig = Figure(key, list(samples), list(baseline), baseline_label, note=note,
                     params=params)
        self.figures.append(fig)
        return fig

    def skip(self, key: str, reason: str, **params) -> Figure:
        fig = Figure(key, reason=reason, params=params)
        self.figures.append(fig)
        return fig

    def plot(self, plot: Plot) -> None:
        self.plots.append(plot)

    def to_json(self) -> dict:
        return {"figures": [f.to_json() for f in self.figures],
                "plots": [asdict(p) for p in self.plots]}


# ---------------------------------------------------------------- the table

def _num(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}" if a >= 0.001 or v == 0 else f"{v:.2g}"


def table(figures: list[Figure], markdown: bool = False) -> str:
    """One row per figure: value (median [min-max]), baseline, ratio, goal, held."""
    head = ["figure", "value: median [min-max]", "baseline (same run)", "ratio", "goal",
            "holds", "measured on"]
    rows = []
    for f in figures:
        if not f.measured:
            rows.append([f.title, "not measured", "-", "-", f.goal_text(), "-", f.reason])
            continue
        value = f"{_num(f.value)} [{_num(min(f.samples))}-{_num(max(f.samples))}] {f.unit}"
        base = f"{_num(f.base)} {f.unit} {f.baseline_label}".strip() if f.baseline else "-"
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
        held = {True: "yes", False: "NO", None: "-"}[f.held]
        rows.append([f.title, value, base, ratio, f.goal_text(), held, f.note])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]

    def fmt(r):
        return "  ".join((c if len(c) <= widths[i] else c[:widths[i] - 1] + "~").ljust(widths[i])
                         for i, c in enumerate(r)).rstrip()
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def write_json(path, figures: list[Figure], plots: list[Plot], meta: dict) -> None:
    data = {"meta": meta, "figures": [f.to_json() for f in figures],
            "plots": [asdict(p) for p in plots]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)


# ---------------------------------------------------------------- plots (Pillow)

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75)]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** int(f"{raw:e}".split("e")[1])
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = (lo // step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            out.append(round(v, 10))
        v += step
    return out


def draw(plot: Plot, path, size=(900, 540)) -> None:
    from PIL import Image, ImageDraw

    W, H = size
    L, R, T, B = 90, 30, 50, 80
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.text((L, 15), plot.title, fill="black")
    points = [p for s in plot.series.values() for p in s]
    if not points:
        d.text((L, H // 2), "no data", fill="black")
        img.save(path)
        return
    cats: list = []
    if plot.kind == "bars":
        for s in plot.series.values():
            for x, _ in s:
                if x not in cats:
                    cats.append(x)
        xlo, xhi = -0.5, len(cats) - 0.5
    else:
        xs = [float(p[0]) for p in points]
        xlo, xhi = min(xs), max(xs)
        if xhi == xlo:
            xhi = xlo + 1
        pad = (xhi - xlo) * 0.03
        xlo, xhi = xlo - pad, xhi + pad
    ys = [float(p[1]) for p in points] + [m[0] for m in plot.marks]
    ylo, yhi = 0.0, max(ys) * 1.25 or 1.0  # headroom for the legend

    def X(x):
        return L + (x - xlo) / (xhi - xlo) * (W - L - R)

    def Y(y):
        return H - B - (y - ylo) / (yhi - ylo) * (H - T - B)

    d.line([(L, T), (L, H - B), (W - R, H - B)], fill="black")
    for t in _ticks(ylo, yhi):
        d.line([(L - 5, Y(t)), (L, Y(t))], fill="black")
        d.line([(L + 1, Y(t)), (W - R, Y(t))], fill=(230, 230, 230))
        d.text((L - 8 - 6 * len(_num(t)), Y(t) - 6), _num(t), fill="black")
    if plot.kind == "bars":
        for i, c in enumerate(cats):
            d.text((X(i) - 3 * len(str(c)), H - B + 8), str(c), fill="black")
    else:
        for t in _ticks(xlo, xhi):
            d.line([(X(t), H - B), (X(t), H - B + 5)], fill="black")
            d.text((X(t) - 3 * len(_num(t)), H - B + 8), _num(t), fill="black")
    d.text(((L + W - R) // 2 - 3 * len(plot.xlabel), H - B + 30), plot.xlabel, fill="black")
    ylabel = Image.new("RGB", (6 * len(plot.ylabel) + 10, 14), "white")
    ImageDraw.Draw(ylabel).text((2, 0), plot.ylabel, fill="black")
    ylabel = ylabel.rotate(90, expand=True)
    img.paste(ylabel, (8, (T + H - B) // 2 - ylabel.size[1] // 2))
    for y, label in plot.marks:
        for x0 in range(L, W - R, 12):
            d.line([(x0, Y(y)), (min(x0 + 6, W - R), Y(y))], fill=(200, 0, 0))
        d.text((L + 6, Y(y) - 14), label, fill=(200, 0, 0))
    n = max(1, len(plot.series))
    for si, (label, pts) in enumerate(plot.series.items()):
        colour = COLOURS[si % len(COLOURS)]
        if plot.kind == "bars":
            width = 0.8 / n
            for x, y in pts:
                i = cats.index(x)
                x0 = X(i - 0.4 + si * width)
                x1 = X(i - 0.4 + (si + 1) * width) - 2
                d.rectangle([x0, Y(y), x1, Y(0)], fill=colour)
                d.text((x0, Y(y) - 13), _num(y), fill="black")
        elif plot.kind == "timeline":
            for x, y in pts:
                d.line([(X(x), Y(0)), (X(x), Y(y))], fill=colour, width=2)
        else:
            pts = sorted((float(x), float(y)) for x, y in pts)
            if len(pts) > 1:
                d.line([(X(x), Y(y)) for x, y in pts], fill=colour, width=2)
            for x, y in pts:
                d.ellipse([X(x) - 4, Y(y) - 4, X(x) + 4, Y(y) + 4], fill=colour)
        ly = T + 4 + 16 * si
        d.rectangle([W - R - 220, ly, W - R - 208, ly + 10], fill=colour)
        d.text((W - R - 202, ly - 1), label, fill="black")
    img.save(path)
