"""The comparison table from configurations: per configuration its seeds, final accuracy, rounds
to the target (and how many seeds reached it), MB communicated and the paper's value where the
configuration is one of a quoted paper's settings (``fedlab.paper.lookup``: McMahan et al. 2017's
rounds to the target, Tables 1 to 3; Reddi et al. 2021's test accuracy); as markdown
(``summary.md``, with the figure and the runs left out) and CSV (``summary.csv``, one column per
number).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from fedlab.paper import ACCURACY, ROUNDS
from fedlab.report import byzantine
from fedlab.report.clients import CLIENTS_FIGURE, has_clients
from fedlab.report.grouping import Configuration, Report
from fedlab.report.plotting import FIGURE

TABLE_MD, TABLE_CSV = "summary.md", "summary.csv"
MAX_LEFT_OUT_LINES = 10

HEADER = (
    "configuration",
    "seeds",
    "rounds",
    "final accuracy",
    "rounds to target",
    "reached",
    "MB to target",
    "MB total",
    "paper",
)


# After "final accuracy", for configurations with personalized evaluation.
PERSONALIZED = "personalized accuracy"


def personalized(configurations: Sequence[Configuration]) -> bool:
    return any(r.personalized for c in configurations for r in c.runs)


def header(configurations: Sequence[Configuration]) -> tuple[str, ...]:
    if not personalized(configurations):
        return HEADER
    at = HEADER.index("final accuracy") + 1
    return (*HEADER[:at], PERSONALIZED, *HEADER[at:])


def rows(configurations: Sequence[Configuration]) -> list[tuple[str, ...]]:
    """The table's rows, as text."""
    out = []
    extra = personalized(configurations)
    for c in configurations:
        reached = c.rounds_to_target()
        out.append(
            (
                c.label,
                ", ".join(c.seeds),
                c.rounds,
                c.final_accuracy().text(4) + _diverged(c),
                *([c.personalized_accuracy().text(4)] if extra else []),
                reached.text(1) if reached.n else "not reached",
                f"{reached.n}/{len(c.runs)}",
                c.mb_to_target().text(1, thousands=True),
                c.mb_total().text(1, thousands=True),
                "; ".join(str(v) for v in c.paper) or "n/a",
            )
        )
    return out


def markdown_table(configurations: Sequence[Configuration]) -> str:
    columns = header(configurations)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
        for row in rows(configurations)
    ]
    return "\n".join(lines)


def markdown(report: Report) -> str:
    targets = sorted({c.target for c in report.configurations if not math.isnan(c.target)})
    parts = [
        f"# {report.source}",
        "",
        f"{_count(report.runs, 'run')} in {_count(len(report.configurations), 'configuration')}"
        + (f"; target test accuracy {', '.join(f'{t:g}' for t in targets)}." if targets else "."),
    ]
    if report.configurations:
        parts += [
            "",
            markdown_table(report.configurations),
            "",
            "Mean ± sample standard deviation over seeds. *Rounds to target* and *MB to target* "
            "average only the seeds that reached the target (*reached*: how many did); a seed "
            "that never reached it is counted there, not averaged in. *MB*: model broadcast and "
            "uploads, cumulative (comm/total_mb). *Paper*, where the configuration is one of its "
            "settings (n/a: it is not): McMahan et al. 2017's rounds to the target (its Tables 1 "
            "to 3), or Reddi et al. 2021's test accuracy in % (the average of the last 100 "
            "rounds, to set beside *final accuracy*); fedlab/paper.py has each number's source."
            + (
                " *Personalized accuracy*: each evaluated client's own model on its own test "
                "data, pooled, at the last evaluation (eval/personalized_accuracy)."
                if personalized(report.configurations)
                else ""
            ),
            "",
            f"![test accuracy against rounds]({FIGURE})",
        ]
        if has_clients(report.configurations):
            parts += ["", f"![test accuracy over clients]({CLIENTS_FIGURE})"]
        runs = [r for c in report.configurations for r in c.runs]
        if byzantine.has_attacks(runs):
            parts += ["", byzantine.markdown(runs)]
    else:
        parts += ["", "No finished run with test accuracy (eval/accuracy) to compare."]
    if report.left_out:
        shown = report.left_out[:MAX_LEFT_OUT_LINES]
        more = len(report.left_out) - len(shown)
        parts += ["", f"Left out ({len(report.left_out)} runs):", ""]
        parts += [f"- {line}" for line in shown]
        if more:
            parts.append(f"- … and {more} more")
    return "\n".join(parts) + "\n"


def write_csv(configurations: Sequence[Configuration], path: Path) -> Path:
    names = list(dict.fromkeys(k for c in configurations for k, _ in c.items))
    fields = [
        "configuration",
        *names,
        "runs",
        "seeds",
        "rounds",
        "target_accuracy",
        "final_accuracy_mean",
        "final_accuracy_std",
        *(
            ["personalized_accuracy_mean", "personalized_accuracy_std"]
            if personalized(configurations)
            else []
        ),
        "rounds_to_target_mean",
        "rounds_to_target_std",
        "reached",
        "mb_to_target_mean",
        "mb_to_target_std",
        "mb_total_mean",
        "mb_total_std",
        "paper_rounds_to_target",
        "paper_accuracy",
        "paper_source",
        "run_ids",
    ]

    def num(value: float | None) -> str:
        return "" if value is None else repr(float(value))

    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for c in configurations:
            final, rtt, mb_t, mb = (
                c.final_accuracy(),
                c.rounds_to_target(),
                c.mb_to_target(),
                c.mb_total(),
            )
            extra = {}
            if personalized(configurations):
                own = c.personalized_accuracy()
                extra = {
                    "personalized_accuracy_mean": num(own.mean),
                    "personalized_accuracy_std": num(own.std),
                }
            writer.writerow(
                {
                    **extra,
                    "configuration": c.label,
                    **dict(c.items),
                    "runs": len(c.runs),
                    "seeds": " ".join(c.seeds),
                    "rounds": c.rounds,
                    "target_accuracy": num(c.target),
                    "final_accuracy_mean": num(final.mean),
                    "final_accuracy_std": num(final.std),
                    "rounds_to_target_mean": num(rtt.mean),
                    "rounds_to_target_std": num(rtt.std),
                    "reached": rtt.n,
                    "mb_to_target_mean": num(mb_t.mean),
                    "mb_to_target_std": num(mb_t.std),
                    "mb_total_mean": num(mb.mean),
                    "mb_total_std": num(mb.std),
                    "paper_rounds_to_target": " ".join(
                        v.number for v in c.paper if v.metric == ROUNDS
                    ),
                    "paper_accuracy": " ".join(
                        " or ".join(f"{a:g}" for a in v.alternatives or (v.value,))
                        for v in c.paper
                        if v.metric == ACCURACY
                    ),
                    "paper_source": " ".join(v.source.replace(" ", "_") for v in c.paper),
                    "run_ids": " ".join(r.run_id for r in c.runs),
                }
            )
    return path


def _diverged(c: Configuration) -> str:
    """How many of its seeds diverged under attack (their final accuracy is the last measured,
    before the model diverged)."""
    k = sum(1 for r in c.runs if r.diverged)
    return f" ({k}/{len(c.runs)} diverged)" if k else ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
