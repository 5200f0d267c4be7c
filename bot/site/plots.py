"""The three evidence plots of a revision page, drawn with matplotlib's Agg canvas into PNG files.

Figures are built with the object API (Figure + FigureCanvasAgg), never pyplot: no global figure state, no
backend switching, safe in a worker thread. PNGs are written without a "Software" tag so the same record
always gives the same bytes (a rebuilt site differs only where a record changed).

Each `plot_*` function returns a `PlotResult`: the file it wrote, or why it drew nothing (absent or unusable
data), so the page can say so instead of showing a broken image.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.scan_record import Landscape, ScanRecord

# Bump when the look of a plot changes: stored stamps then no longer match and plots are redrawn.
PLOT_STYLE_VERSION = 1

LANDSCAPE_FILE = "landscape.png"
ASSIMILATION_FILE = "assimilation.png"
ATTENTION_FILE = "attention.png"
STAMP_FILE = "plots.json"

_DPI = 100
_WITH_COLOR = "#c0392b"
_WITHOUT_COLOR = "#2c7fb8"


@dataclass(frozen=True)
class PlotResult:
    name: str                # "landscape" | "assimilation" | "attention"
    file: str | None         # file name inside the plot directory; None when nothing was drawn
    skipped_reason: str | None = None
    width: int = 0           # pixels, for the <img> (no layout shift while it loads)
    height: int = 0


@dataclass(frozen=True)
class RevisionPlots:
    landscape: PlotResult
    assimilation: PlotResult
    attention: PlotResult

    def all(self) -> tuple[PlotResult, ...]:
        return (self.landscape, self.assimilation, self.attention)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path, name: str) -> PlotResult:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    width, height = figure.canvas.get_width_height()
    return PlotResult(name, path.name, width=width, height=height)


def _integer_counts(axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _finite(values: list[float]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _landscape_problem(landscape: Landscape) -> str | None:
    if len(landscape.alphas) < 2 or len(landscape.betas) < 2:
        return "the loss grid has fewer than 2 points along an axis"
    if len(landscape.loss) != len(landscape.alphas) or any(len(row) != len(landscape.betas) for row in landscape.loss):
        return "the loss grid does not match its axes"
    if not any(math.isfinite(v) for row in landscape.loss for v in row):
        return "the loss grid holds no finite value"
    return None


def plot_landscape(landscape: Landscape | None, path: Path) -> PlotResult:
    """Loss contour around the inverted pseudo-token, beside the histogram of its Hessian eigenvalues."""
    if landscape is None:
        return PlotResult("landscape", None, "no loss landscape was computed for this scan")
    problem = _landscape_problem(landscape)
    if problem is not None:
        return PlotResult("landscape", None, problem)
    import numpy as np

    loss = np.ma.masked_invalid(np.asarray(landscape.loss, dtype=float))
    figure = _figure(9.0, 3.6)
    contour_axes, hist_axes = figure.subplots(1, 2, width_ratios=(1.2, 1.0))
    # loss[i][j] is at (alphas[i], betas[j]): rows run along alpha, so alpha is the vertical axis.
    filled = contour_axes.contourf(landscape.betas, landscape.alphas, loss, levels=14, cmap="viridis")
    contour_axes.contour(landscape.betas, landscape.alphas, loss, levels=7, colors="white", linewidths=0.5)
    contour_axes.plot([0.0], [0.0], marker="x", color="#ff4136", markersize=8)
    contour_axes.set_xlabel("β (random orthogonal direction)")
    contour_axes.set_ylabel("α (−gradient direction)")
    contour_axes.set_title("Loss around the inverted pseudo-token")
    figure.colorbar(filled, ax=contour_axes, label="loss")

    eigenvalues = _finite(landscape.hessian_eigenvalues)
    if eigenvalues:
        bins = _shared_bins(eigenvalues, count=20)
        hist_axes.hist([v for v in eigenvalues if v > 0], bins=bins, color="#2ecc40", label="positive")
        hist_axes.hist([v for v in eigenvalues if v <= 0], bins=bins, color="#ff851b", label="≤ 0")
        hist_axes.axvline(0.0, color="#333333", linewidth=0.8)
        hist_axes.set_ylim(0.0, hist_axes.get_ylim()[1] * 1.3)  # headroom for the legend
        hist_axes.legend(loc="upper left", fontsize="small")
    else:
        hist_axes.text(0.5, 0.5, "no eigenvalues", ha="center", va="center", transform=hist_axes.transAxes)
    ratio = landscape.positive_ratio
    shown_ratio = f"{ratio:.2f}" if math.isfinite(ratio) else "n/a"
    hist_axes.set_title(f"Hessian eigenvalues: {shown_ratio} positive")
    hist_axes.set_xlabel("eigenvalue")
    hist_axes.set_ylabel("count")
    _integer_counts(hist_axes)
    return _save(figure, path, "landscape")


def _shared_bins(values: list[float], *, count: int, floor: tuple[float, float] | None = None) -> list[float]:
    low, high = min(values), max(values)
    if floor is not None:
        low, high = min(low, floor[0]), max(high, floor[1])
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    step = (high - low) / count
    return [low + step * index for index in range(count + 1)]


def plot_assimilation(with_trigger: list[float], without_trigger: list[float], path: Path) -> PlotResult:
    """Per-prompt assimilation on held-out prompts, with the inverted trigger inserted and without it."""
    with_values, without_values = _finite(with_trigger), _finite(without_trigger)
    if not with_values and not without_values:
        return PlotResult("assimilation", None, "no per-prompt assimilation was recorded")
    figure = _figure(6.4, 3.6)
    axes = figure.subplots()
    bins = _shared_bins(with_values + without_values, count=24, floor=(0.0, 1.0))
    axes.hist(without_values, bins=bins, color=_WITHOUT_COLOR, alpha=0.65,
              label=f"without trigger (n={len(without_values)})")
    axes.hist(with_values, bins=bins, color=_WITH_COLOR, alpha=0.65,
              label=f"with inverted trigger (n={len(with_values)})")
    axes.set_xlabel("assimilation of token features")
    axes.set_ylabel("held-out prompts")
    _integer_counts(axes)
    axes.set_title("Assimilation with vs without the inverted trigger")
    axes.set_ylim(0.0, axes.get_ylim()[1] * 1.25)  # headroom for the legend
    axes.legend(loc="upper center", fontsize="small")
    return _save(figure, path, "assimilation")


def plot_attention(shares: list[float], path: Path) -> PlotResult:
    """The share of attention the inserted token receives, layer by layer."""
    if not shares:
        return PlotResult("attention", None, "no per-layer attention share was recorded")
    values = [float(v) if math.isfinite(v) else 0.0 for v in shares]
    figure = _figure(6.4, 3.4)
    axes = figure.subplots()
    layers = list(range(1, len(values) + 1))
    axes.bar(layers, values, color="#6f42c1")
    axes.set_xticks(layers if len(layers) <= 24 else layers[:: max(1, len(layers) // 12)])
    axes.set_xlabel("layer")
    axes.set_ylabel("attention share")
    top = max(values)
    axes.set_ylim(0.0, top * 1.15 if top > 0 else 1.0)
    axes.set_title("Attention taken by the inserted token")
    return _save(figure, path, "attention")


def write_plots(record: ScanRecord, directory: Path, *, reuse: bool = True) -> RevisionPlots:
    """Draws every plot `record` has data for into `directory`.

    With `reuse`, plots drawn earlier from the same record (and the same plot style and matplotlib version)
    are kept: a stamp file beside them says what they were drawn from. Drawing is the slow part of a build.
    """
    key = _stamp_key(record)
    if reuse:
        stored = _read_stamp(directory, key)
        if stored is not None:
            return stored
    plots = RevisionPlots(
        landscape=plot_landscape(record.landscape, directory / LANDSCAPE_FILE),
        assimilation=plot_assimilation(record.assimilation_with_trigger, record.assimilation_without_trigger,
                                       directory / ASSIMILATION_FILE),
        attention=plot_attention(record.attention_share_per_layer, directory / ATTENTION_FILE),
    )
    directory.mkdir(parents=True, exist_ok=True)
    stamp = {"key": key, "plots": [asdict(plot) for plot in plots.all()]}
    (directory / STAMP_FILE).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return plots


def _stamp_key(record: ScanRecord) -> str:
    import matplotlib

    text = f"{PLOT_STYLE_VERSION}\n{matplotlib.__version__}\n{record.to_json()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_stamp(directory: Path, key: str) -> RevisionPlots | None:
    try:
        stamp = json.loads((directory / STAMP_FILE).read_text(encoding="utf-8"))
        if stamp.get("key") != key:
            return None
        results = [PlotResult(**item) for item in stamp["plots"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if any(result.file is not None and not (directory / result.file).is_file() for result in results):
        return None
    by_name = {result.name: result for result in results}
    try:
        return RevisionPlots(landscape=by_name["landscape"], assimilation=by_name["assimilation"],
                             attention=by_name["attention"])
    except KeyError:
        return None
