"""The table Byzantine-robust FL papers print, from runs under attack (``experiment=byzantine``):
final test accuracy by defence (the aggregator, rows) × attack (columns), one table per setting
(model, partition) and malicious fraction, with the runs without malicious clients as the
"no attack" column; and, for the backdoor attacks (``backdoor``, ``scaling``), the final
backdoor accuracy (``eval/backdoor_accuracy``). A cell is the mean ± sample standard deviation
over seeds; a run whose model diverged under attack (tag ``fedlab.diverged``) counts as such and
the cell says so (``diverged``: every seed; ``k/n div.``: some). The figure draws the accuracy
tables as heat maps, one panel per setting and fraction (``byzantine.png``; diverged cells
grey)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from fedlab.report.reading import RunSeries

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BYZANTINE_FIGURE = "byzantine.png"
NO_ATTACK = "no attack"
# Rows in this order (the robust rules after the mean, as the papers list them); others after.
DEFENCES = (
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "bulyan",
    "geometric_median",
    "centered_clipping",
    "norm_bounding",
)
ATTACK_ORDER = (NO_ATTACK, "sign_flip", "gaussian", "scaling", "alie", "ipm", "min_max",
                "label_flip", "backdoor")  # fmt: skip


def attack_of(params: dict[str, str]) -> tuple[str, float]:
    """(the attack, the malicious fraction) of a run: no attack at fraction 0 or attack=none."""
    name = params.get("attack.name", "none")
    fraction = float(params.get("attack.fraction", 0) or 0)
    return (NO_ATTACK, 0.0) if name == "none" or fraction == 0 else (name, fraction)


def has_attacks(series: Sequence[RunSeries]) -> bool:
    """Whether any run was under attack (the table is made only then)."""
    return any(attack_of(s.params)[0] != NO_ATTACK for s in series)


@dataclass
class Cell:
    runs: list[RunSeries] = field(default_factory=list)

    def text(self, backdoor: bool = False) -> str:
        if not self.runs:
            return "—"
        diverged = [r for r in self.runs if r.diverged]
        if len(diverged) == len(self.runs):
            rounds = sorted({r.diverged.split(":")[0].removeprefix("round ") for r in diverged})
            return f"diverged (r{', r'.join(rounds)})"
        kept = [r for r in self.runs if not r.diverged]
        values = [r.backdoor_accuracy if backdoor else r.final_accuracy for r in kept]
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        text = f"{statistics.fmean(values):.3f}"
        if len(values) > 1:
            text += f" ± {statistics.stdev(values):.3f}"
        if diverged:
            text += f" ({len(diverged)}/{len(self.runs)} div.)"
        return text

    def mean(self, backdoor: bool = False) -> float | None:
        values = [
            r.backdoor_accuracy if backdoor else r.final_accuracy
            for r in self.runs
            if not r.diverged
        ]
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else None

    @property
    def diverged(self) -> bool:
        return bool(self.runs) and all(r.diverged for r in self.runs)


@dataclass
class Table:
    """One setting at one malicious fraction: cells[defence][attack]."""

    setting: str  # "model=2nn, partition=iid"
    fraction: float
    defences: list[str]
    attacks: list[str]
    cells: dict[str, dict[str, Cell]]

    @property
    def title(self) -> str:
        return f"{self.setting}, malicious fraction {self.fraction:g}"

    def markdown(self, backdoor: bool = False) -> str:
        attacks = self.attacks if not backdoor else [a for a in self.attacks if _is_backdoor(a)]
        lines = ["| defence | " + " | ".join(attacks) + " |", "|---|" + "---|" * len(attacks)]
        for d in self.defences:
            row = [self.cells[d].get(a, Cell()).text(backdoor) for a in attacks]
            lines.append(f"| {d} | " + " | ".join(row) + " |")
        return "\n".join(lines)


def _is_backdoor(attack: str) -> bool:
    return attack in ("backdoor", "scaling")


def _order(names: set[str], canonical: Sequence[str]) -> list[str]:
    return [n for n in canonical if n in names] + sorted(n for n in names if n not in canonical)


def tables(series: Sequence[RunSeries]) -> list[Table]:
    """One table per setting (model, partition) and malicious fraction above 0; the runs without
    malicious clients of the same setting and defence fill each table's "no attack" column."""
    settings: dict[str, list[RunSeries]] = {}
    for s in series:
        model, partition = s.params.get("model.name", "?"), s.params.get("partition.name", "?")
        key = f"model={model}, partition={partition}"
        settings.setdefault(key, []).append(s)
    out = []
    for setting, runs in settings.items():
        fractions = sorted({attack_of(r.params)[1] for r in runs} - {0.0})
        clean = [r for r in runs if attack_of(r.params)[0] == NO_ATTACK]
        for fraction in fractions or [0.0]:
            chosen = [r for r in runs if attack_of(r.params)[1] == fraction] if fraction else []
            defences = _order({r.params.get("aggregator.name", "?") for r in runs}, DEFENCES)
            attacks = _order({attack_of(r.params)[0] for r in [*clean, *chosen]}, ATTACK_ORDER)
            cells: dict[str, dict[str, Cell]] = {d: {} for d in defences}
            for r in [*clean, *chosen]:
                d, (a, _) = r.params.get("aggregator.name", "?"), attack_of(r.params)
                cells[d].setdefault(a, Cell()).runs.append(r)
            out.append(Table(setting, fraction, defences, attacks, cells))
    return out


def markdown(series: Sequence[RunSeries]) -> str:
    """The robustness section of ``summary.md``: each table, then its backdoor table."""
    parts = [
        "## Robustness: final test accuracy by defence × attack",
        "",
        "Mean ± sample standard deviation over seeds of the final test accuracy; *diverged*: the "
        "global model diverged under attack in every seed (the round it did), *k/n div.*: in k "
        "of n seeds (left out of the mean). *No attack*: the same defence without malicious "
        "clients.",
    ]
    for table in tables(series):
        parts += ["", f"### {table.title}", "", table.markdown()]
        if any(_is_backdoor(a) for a in table.attacks):
            parts += [
                "",
                "Backdoor accuracy (eval/backdoor_accuracy: triggered test images, not of the "
                "target class, classified as the target), final:",
                "",
                table.markdown(backdoor=True),
            ]
    parts += ["", f"![final test accuracy by defence and attack]({BYZANTINE_FIGURE})"]
    return "\n".join(parts)


def plot_byzantine(series: Sequence[RunSeries], path: Path) -> Path:
    """The accuracy tables as heat maps (defences × attacks), one panel per table."""
    made = [t for t in tables(series) if t.fraction > 0] or tables(series)
    width = max(6.4, 1.5 + 0.75 * max(len(t.attacks) for t in made))
    fig, axes = plt.subplots(1, len(made), figsize=(width * len(made), 5.2), dpi=120, squeeze=False)
    for ax, table in zip(axes[0], made, strict=True):
        grid = [
            [table.cells[d].get(a, Cell()).mean() for a in table.attacks] for d in table.defences
        ]
        values = [[float("nan") if v is None else v for v in row] for row in grid]
        cmap = plt.get_cmap("RdYlGn").copy()
        cmap.set_bad("0.6")  # diverged (or not run): grey
        image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
        for i, d in enumerate(table.defences):
            for j, a in enumerate(table.attacks):
                cell = table.cells[d].get(a, Cell())
                text = (
                    "div." if cell.diverged else ("" if grid[i][j] is None else f"{grid[i][j]:.2f}")
                )
                ax.text(j, i, text, ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(table.attacks)), table.attacks, rotation=45, ha="right")
        ax.set_yticks(range(len(table.defences)), table.defences)
        ax.set_title(table.title, fontsize="small")
    fig.colorbar(image, ax=axes[0].tolist(), label="final test accuracy", shrink=0.8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
