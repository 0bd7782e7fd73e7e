"""The privacy–utility figure of DP-FedAvg runs (McMahan et al. 2018, Figure 3's comparison):
test accuracy against the privacy spent, ε at the runs' δ. One line per configuration: its test
accuracy (mean over seeds) at each evaluated round against the ε spent by then, so the line ends
at the run's final ε; runs without ε (no noise, or no DP) are left out of this figure."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from fedlab.report.grouping import Configuration

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PRIVACY_FIGURE = "accuracy_vs_epsilon.png"


def privacy_curve(config: Configuration) -> tuple[list[float], list[float]]:
    """(ε, mean test accuracy over seeds) at each round where every seed has both."""
    rounds = sorted(set.intersection(*(set(r.accuracy) & set(r.epsilon) for r in config.runs)))
    eps = [statistics.fmean(r.epsilon[k] for r in config.runs) for k in rounds]
    acc = [statistics.fmean(r.accuracy[k] for r in config.runs) for k in rounds]
    return eps, acc


def plot_privacy(configurations: Sequence[Configuration], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    deltas = set()
    for config in configurations:
        if not all(r.epsilon for r in config.runs):
            continue
        eps, acc = privacy_curve(config)
        if not eps:
            continue
        line = ax.plot(eps, acc, linewidth=1.5, label=f"{config.label} (n={len(config.runs)})")
        ax.plot(eps[-1:], acc[-1:], "o", color=line[0].get_color())
        deltas.add(config.params.get("privacy.delta", "?"))
    ax.set_xscale("log")
    ax.set_xlabel(f"ε spent (δ = {', '.join(sorted(deltas))}; RDP, m of K without replacement)")
    ax.set_ylabel("test accuracy")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(loc="best", fontsize="small")
    ax.set_title("DP-FedAvg: test accuracy against privacy spent", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
