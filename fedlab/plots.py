"""Figures of a run, drawn with matplotlib (headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_accuracy(history: dict[int, float], target: float, path: Path) -> Path:
    """Test accuracy against communication rounds, with the target accuracy drawn (as Figure 2
    of McMahan et al. 2017)."""
    rounds = sorted(history)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(rounds, [history[r] for r in rounds], marker="." if len(rounds) < 50 else None)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel("communication rounds")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(min(0.8, min(history.values()) - 0.02), 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
