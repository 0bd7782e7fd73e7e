"""The spread of federated evaluation over clients: for each configuration, the empirical
distribution (ECDF) of its clients' test accuracy at the last evaluation, pooled over its seeds.
Drawn beside the accuracy curve for runs on a dataset with clients of its own (Shakespeare,
EMNIST, CIFAR-100), where one pooled accuracy hides how unevenly the model serves its clients.

For runs with personalized evaluation (``fedlab.callbacks.personalized``) the figure has two
panels side by side, over the same clients and the same examples (each client's own test data):
the global model on each client, and each client's own model (Ditto's personal model, FedPer's
head on the global base; the global model again for an algorithm without per-client models)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

from fedlab.report.grouping import Configuration

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CLIENTS_FIGURE = "client_accuracy.png"
LEGEND_INSIDE_MAX = 6  # more configurations than this, and each legend goes below its axes


def has_clients(configurations: Sequence[Configuration]) -> bool:
    return any(r.client_accuracy or r.personalized for c in configurations for r in c.runs)


def _panel(ax, configurations, values_of, pooled_of, xlabel: str, title: str) -> None:
    """One step line per configuration with per-client accuracies: the fraction of clients whose
    accuracy is at most x; the dotted vertical line is the pooled accuracy (mean over seeds)."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, config in enumerate(configurations):
        runs = [r for r in config.runs if values_of(r)]
        if not runs:
            continue
        values = np.sort(np.concatenate([values_of(r) for r in runs]))
        color = colors[index % len(colors)]
        fraction = np.arange(1, values.size + 1) / values.size
        p10, p50, p90 = np.percentile(values, [10, 50, 90])
        label = (
            f"{config.label}: {values.size} clients over {len(runs)} seed(s); "
            f"p10 {p10:.3f}, median {p50:.3f}, p90 {p90:.3f}"
        )
        ax.step(values, fraction, where="post", color=color, linewidth=1.5, label=label)
        pooled = float(np.mean([pooled_of(r) for r in runs]))
        ax.axvline(pooled, color=color, linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of clients")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    if len(ax.get_legend_handles_labels()[1]) <= LEGEND_INSIDE_MAX:
        ax.legend(loc="upper left", fontsize="x-small")
    else:  # below the axes, where it covers no line; savefig's tight box takes it in
        legend = ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), fontsize="x-small")
        legend.set_in_layout(False)  # the axes keep their size
    ax.set_title(title, fontsize="medium")


def plot_clients(configurations: Sequence[Configuration], path: Path) -> Path:
    """The ECDF of the clients' accuracy per configuration: one panel (federated evaluation of
    the global model), or, for runs with personalized evaluation, the global model and each
    client's own model side by side, on the clients' own test data."""
    if not any(r.personalized for c in configurations for r in c.runs):
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
        _panel(
            ax,
            configurations,
            lambda r: r.client_accuracy,
            lambda r: r.final_accuracy,
            "client test accuracy (last evaluation)",
            "Accuracy over clients (ECDF); dotted: pooled accuracy",
        )
    else:
        fig, (left, right) = plt.subplots(
            1, 2, figsize=(12.8, 4.6), dpi=120, sharex=True, sharey=True
        )
        _panel(
            left,
            configurations,
            lambda r: r.personalized.get("global", []),
            lambda r: r.personalized["pooled"]["global"],
            "client accuracy of the global model (last evaluation)",
            "Global model on each client's own test data",
        )
        _panel(
            right,
            configurations,
            lambda r: r.personalized.get("personalized", []),
            lambda r: r.personalized["pooled"]["personalized"],
            "client accuracy of its own model (last evaluation)",
            "Each client's own model on its own test data",
        )
        fig.suptitle("Accuracy over clients (ECDF); dotted: pooled accuracy", fontsize="medium")
    fig.tight_layout()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    extra = [*fig.get_default_bbox_extra_artists(), *legends]  # the suptitle too
    fig.savefig(path, bbox_inches="tight", bbox_extra_artists=extra)
    plt.close(fig)
    return path
