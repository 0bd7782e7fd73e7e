"""Figures of a run, drawn with matplotlib (headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# What the run's figure shows, in this order, where the run logged it: (metric, axis label,
# whether the target accuracy is drawn on it).
PANELS = (
    ("train/loss", "train loss", False),
    ("eval/accuracy", "test accuracy", True),
    ("eval/personalized_accuracy", "personalized accuracy", True),
    ("privacy/epsilon", "ε spent (privacy)", False),
)
MB = "comm/total_mb"
FIGURE = "metrics.png"


def plot_run(history: dict[str, list[tuple[int, float]]], target: float, path: Path) -> Path:
    """``run_figure`` written to ``path`` (PNG)."""
    fig = run_figure(history, target)
    fig.savefig(path)
    plt.close(fig)
    return path


def run_figure(history: dict[str, list[tuple[int, float]]], target: float):
    """Every metric of a run in one figure: train loss, test accuracy and, where logged,
    personalized accuracy and ε, one row each, against communication rounds (left, as Figure 2
    of McMahan et al. 2017) and against the MB communicated up to that round (right, where the
    run counted it). The target accuracy is drawn dashed on the accuracies."""
    rows = [(key, label, dashed) for key, label, dashed in PANELS if history.get(key)]
    mb = {0: 0.0, **dict(history.get(MB, []))}  # nothing is communicated before round 1
    columns = 2 if len(mb) > 1 else 1
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(5.2 * columns, 2.6 * len(rows) + 0.4), dpi=120,
        squeeze=False, sharex="col",
    )  # fmt: skip
    for (key, label, dashed), row in zip(rows, axes, strict=True):
        points = history[key]
        rounds, values = [r for r, _ in points], [v for _, v in points]
        marker = "." if len(points) < 50 else None
        row[0].plot(rounds, values, marker=marker)
        if columns == 2:
            at_mb = [(mb[r], v) for r, v in points if r in mb]
            row[1].plot([x for x, _ in at_mb], [v for _, v in at_mb], marker=marker)
        for ax in row:
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            if dashed:
                ax.axhline(target, color="grey", linestyle="--", linewidth=1)
                low = min(values)
                ax.set_ylim(
                    max(0.0, min(low, target) - 0.02), min(1.0, max(*values, target)) + 0.01
                )
    axes[-1][0].set_xlabel("communication rounds")
    if columns == 2:
        axes[-1][1].set_xlabel("MB communicated (broadcast and uploads)")
    if any(dashed for _, _, dashed in rows):
        fig.suptitle(f"dashed: target accuracy {target:g}", fontsize="small")
    fig.tight_layout()
    return fig
