"""Figure 2 of McMahan et al. 2017 from configurations: test accuracy against communication
rounds, one line per configuration (the mean over seeds, a min–max band), the target dashed,
the y axis zoomed near the top; one panel per partition. Drawn with matplotlib, headless.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from fedlab.report.grouping import Configuration

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

FIGURE = "test_accuracy.png"
BAND = "min–max over seeds"


def plot(configurations: Sequence[Configuration], path: Path) -> Path:
    """``figure`` of the configurations, written to ``path`` (PNG)."""
    fig = figure(configurations)
    # A legend beside the axes is left out of the layout (the axes keep their size); the saved
    # figure grows to hold it.
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    extra = [*fig.get_default_bbox_extra_artists(), *legends]
    fig.savefig(path, bbox_inches="tight", bbox_extra_artists=extra)
    plt.close(fig)
    return path


def figure(configurations: Sequence[Configuration]):
    """Figure 2 of McMahan et al. 2017: test accuracy against rounds, one line per configuration
    (mean over seeds, min–max band), the target dashed, the y axis zoomed near the top. With
    several partitions, one panel each (IID beside non-IID, as in the paper). Where an Optuna
    search's pruner stopped a run, its curve ends in a cross."""
    partitions = list(dict.fromkeys(c.params.get("partition.name", "") for c in configurations))
    panels = partitions if len(partitions) > 1 else [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.4 * len(panels), 4.4), dpi=120, squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # One colour for what a line is, whatever its panel: FedAvg's IID and non-IID curves alike.
    color_of: dict[str, str] = {}
    for ax, panel in zip(axes[0], panels, strict=True):
        pruned = False
        # Each panel zoomed on its own curves: non-IID ones sit far below IID ones.
        finals, highs, targets = [], [], set()
        for index, config in enumerate(configurations):
            if panel is not None and config.params.get("partition.name", "") != panel:
                continue
            rounds, mean, low, high = config.curve()
            items = [(k, v) for k, v in config.items if panel is None or k != "partition"]
            label = ", ".join(f"{k}={v}" for k, v in items) or config.label
            label += f" (n={len(config.runs)})"
            key = label if panel is not None else str(index)
            color = color_of.setdefault(key, colors[len(color_of) % len(colors)])
            marker = "." if len(rounds) < 50 else None
            ax.plot(rounds, mean, color=color, marker=marker, linewidth=1.5, label=label)
            if len(config.runs) > 1:
                ax.fill_between(rounds, low, high, color=color, alpha=0.2, linewidth=0)
            for run in config.runs:  # where an Optuna search's pruner stopped a run
                if run.pruned_at is not None and run.pruned_at in run.accuracy:
                    ax.plot([run.pruned_at], [run.accuracy[run.pruned_at]], marker="x",
                            color=color, markersize=8, linestyle="none")  # fmt: skip
                    pruned = True
            finals.append(min(mean[len(mean) // 2 :]))  # the second half of the curve
            highs.append(max(high))
            if not math.isnan(config.target):
                targets.add(config.target)
        for target in sorted(targets):
            ax.axhline(
                target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}"
            )
        ax.set_ylim(*_zoom(finals, highs, sorted(targets)))
        ax.set_ylabel("test accuracy")
        ax.set_xlabel("communication rounds")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel is not None:
            ax.set_title(f"partition={panel}")
        ax.grid(True, alpha=0.3)
        if pruned:
            ax.plot([], [], marker="x", color="grey", linestyle="none", label="pruned (Optuna)")
        _legend(ax, below=len(panels) > 1)
    fig.suptitle(f"Test accuracy: mean over seeds, band = {BAND}", fontsize="medium")
    fig.tight_layout()
    return fig


# More entries than this, or any this long, and the legend moves beside the axes, where it
# covers no curve (an Optuna search has a configuration per trial).
LEGEND_INSIDE_MAX = 6
LEGEND_INSIDE_CHARS = 40
LEGEND_ROWS = 24  # a column of the legend beside the axes holds this many


def _legend(ax, below: bool = False) -> None:
    """Inside the axes when short; otherwise beside them, or ``below`` them where panels stand
    side by side (a legend beside the left panel would cover the right one)."""
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) <= LEGEND_INSIDE_MAX and max(map(len, labels), default=0) <= LEGEND_INSIDE_CHARS:
        ax.legend(loc="best", fontsize="small")
        return
    columns = math.ceil(len(labels) / LEGEND_ROWS)
    if below:
        legend = ax.legend(
            loc="upper left", bbox_to_anchor=(0.0, -0.14), borderaxespad=0.0,
            fontsize="small", ncol=columns,
        )  # fmt: skip
    else:
        legend = ax.legend(
            loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
            fontsize="small", ncol=columns,
        )  # fmt: skip
    # Laid out without it (the axes keep their size); savefig's tight box takes it in.
    legend.set_in_layout(False)


def _zoom(
    finals: Sequence[float], highs: Sequence[float], targets: Sequence[float]
) -> tuple[float, float]:
    """y limits zoomed near the top, as in the paper: from a little below the lowest curve's
    late points (or the target, if lower) to just above the highest point and the target. The
    early rounds of a curve that ends high fall below the axis, as in Figure 2."""
    low = min([*finals, *targets], default=0.0)
    bottom = max(0.0, low - max(0.01, 0.1 * (1.0 - low)))
    top = min(1.0, max([*highs, *targets], default=1.0) + 0.01)
    return (bottom, top) if top - bottom >= 0.02 else (max(0.0, top - 0.02), top)
