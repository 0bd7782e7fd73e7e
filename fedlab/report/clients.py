"""The spread of federated evaluation over clients: for each configuration, the empirical
distribution (ECDF) of its clients' test accuracy at the last evaluation, pooled over its seeds.
Drawn beside the accuracy curve for runs on a dataset with clients of its own (Shakespeare,
EMNIST, CIFAR-100), where one pooled accuracy hides how unevenly the model serves its clients."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

from fedlab.report.grouping import Configuration

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CLIENTS_FIGURE = "client_accuracy.png"


def has_clients(configurations: Sequence[Configuration]) -> bool:
    return any(r.client_accuracy for c in configurations for r in c.runs)


def plot_clients(configurations: Sequence[Configuration], path: Path) -> Path:
    """One step line per configuration with per-client accuracies: the fraction of clients
    whose accuracy is at most x; the dotted vertical line is the configuration's pooled
    accuracy (mean over seeds), for comparison."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, config in enumerate(configurations):
        values = np.sort(np.concatenate([r.client_accuracy for r in config.runs]))
        if not values.size:
            continue
        color = colors[index % len(colors)]
        fraction = np.arange(1, values.size + 1) / values.size
        p10, p50, p90 = np.percentile(values, [10, 50, 90])
        label = (
            f"{config.label}: {values.size} clients over {len(config.runs)} seed(s); "
            f"p10 {p10:.3f}, median {p50:.3f}, p90 {p90:.3f}"
        )
        ax.step(values, fraction, where="post", color=color, linewidth=1.5, label=label)
        pooled = float(np.mean([r.final_accuracy for r in config.runs]))
        ax.axvline(pooled, color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("client test accuracy (last evaluation)")
    ax.set_ylabel("fraction of clients")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="x-small")
    ax.set_title("Accuracy over clients (ECDF); dotted: pooled accuracy", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
