"""Charts for ``docs/performance.md``: Tether beside its same-run baseline, as SVG files.

People choosing a server read pictures before tables, so every scenario draws one. The
files land in ``docs/perf/`` and the report links them by relative path, so they render
on GitHub and in any Markdown viewer. matplotlib (the ``bench`` dependency group) draws
them; its SVG output is made reproducible (fixed hash salt, no date) so that a re-run
which measures the same numbers leaves the file unchanged in git.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on a server; must precede pyplot's import

import matplotlib.pyplot as plt

from bench.common import REPORT

#: Where the charts live, next to the report that links them.
CHARTS = REPORT.parent / "perf"
#: Set by ``python -m bench`` when a run writes no report (``--quick`` smoke tests), so
#: that such a run cannot overwrite the measured charts that the report links.
CHARTS_ENV = "TETHER_BENCH_CHARTS"

#: Tether first, baselines after: the same colours in every chart.
_PALETTE = ("#1f6feb", "#8b949e", "#d29922", "#2da44e", "#cf222e", "#8250df")

plt.rcParams.update(
    {
        "svg.hashsalt": "tether-bench",
        "svg.fonttype": "none",  # text stays text: smaller files, selectable labels
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
    }
)


def _save(figure: plt.Figure, name: str) -> str:
    """Write ``docs/perf/<name>.svg`` and return the report's Markdown image link."""
    folder = Path(os.environ.get(CHARTS_ENV) or CHARTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.svg"
    figure.tight_layout()
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    return f"![{name}](perf/{path.name})"


def lines(
    name: str,
    *,
    title: str,
    x_label: str,
    y_label: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    log_y: bool = False,
) -> str:
    """One line per system over a shared x axis (time, connections held, rate...)."""
    figure, axes = plt.subplots(figsize=(7.0, 3.6))
    for colour, (label, points) in zip(_PALETTE, series.items(), strict=False):
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, label=label, color=colour, linewidth=1.6)
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    if log_y:
        axes.set_yscale("log")
    axes.legend(frameon=False)
    return _save(figure, name)


def bars(
    name: str,
    *,
    title: str,
    y_label: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    log_y: bool = False,
) -> str:
    """Grouped bars: one group per measurement (p50, p99, 1 process...), one bar per system.

    ``series`` maps a system's label to one value per group, in ``groups`` order.
    """
    figure, axes = plt.subplots(figsize=(7.0, 3.6))
    count = max(1, len(series))
    width = 0.8 / count
    for index, (colour, (label, values)) in enumerate(zip(_PALETTE, series.items(), strict=False)):
        offsets = [g + (index - (count - 1) / 2) * width for g in range(len(groups))]
        drawn = axes.bar(offsets, list(values), width=width, label=label, color=colour)
        axes.bar_label(drawn, fmt="%.3g", fontsize=8, padding=2)
    axes.set_xticks(range(len(groups)), list(groups))
    axes.set_title(title)
    axes.set_ylabel(y_label)
    if log_y:
        axes.set_yscale("log")
    axes.legend(frameon=False)
    return _save(figure, name)
