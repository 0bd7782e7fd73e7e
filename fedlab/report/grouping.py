"""Runs into configurations, as McMahan et al. 2017 compare them.

Runs whose params differ only in ``seed`` and bookkeeping (``fedlab.checkpoint.affects_numbers``)
are one configuration; each is named by the params the compared configurations differ in (a
sweep's swept keys first), carries the paper's value where it is one of the paper's settings
(``fedlab.paper``), and aggregates its seeds (``Stat``: mean and sample standard deviation).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from fedlab import paper
from fedlab.checkpoint import affects_numbers
from fedlab.report.reading import RunSeries

# What names a configuration when nothing varies.
DESCRIBE = ("model.name", "partition.name", "C", "E", "B")


@dataclass
class Stat:
    """Mean and sample standard deviation (None for fewer than 2 values) of some values."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    def text(self, digits: int, thousands: bool = False) -> str:
        if not self.values:
            return "—"
        spec = f"{',' if thousands else ''}.{digits}f"
        if self.std is None:
            return format(self.mean, spec)
        return f"{format(self.mean, spec)} ± {format(self.std, spec)}"


@dataclass
class Configuration:
    """Runs that differ only in seed (and bookkeeping)."""

    items: list[tuple[str, str]]  # (display key, value) pairs that name it
    runs: list[RunSeries]
    paper: list[paper.PaperValue] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.items)

    @property
    def params(self) -> dict[str, str]:
        return self.runs[0].params

    @property
    def target(self) -> float:
        return float(self.params.get("target_accuracy", "nan"))

    @property
    def seeds(self) -> list[str]:
        return sorted((r.seed for r in self.runs), key=lambda s: (len(s), s))  # 2 before 10

    @property
    def reached(self) -> list[RunSeries]:
        return [r for r in self.runs if r.rounds_to_target is not None]

    @property
    def rounds(self) -> str:
        finals = sorted({r.final_round for r in self.runs})
        text = str(finals[0]) if len(finals) == 1 else f"{finals[0]}–{finals[-1]}"
        pruned = sum(r.pruned_at is not None for r in self.runs)
        if pruned:
            text += " (pruned)" if pruned == len(self.runs) else f" ({pruned} pruned)"
        return text

    def final_accuracy(self) -> Stat:
        return Stat([r.final_accuracy for r in self.runs])

    def rounds_to_target(self) -> Stat:
        return Stat([float(r.rounds_to_target) for r in self.reached])

    def mb_to_target(self) -> Stat:
        return Stat([r.mb_to_target for r in self.reached if r.mb_to_target is not None])

    def mb_total(self) -> Stat:
        return Stat([r.mb_total for r in self.runs if r.mb_total is not None])

    def personalized_accuracy(self) -> Stat:
        """Personalized evaluation's last pooled accuracy of each client's own model."""
        return Stat([r.personalized["pooled"]["personalized"] for r in self.runs if r.personalized])

    def curve(self) -> tuple[list[int], list[float], list[float], list[float]]:
        """Rounds, and the mean, min and max test accuracy over the seeds evaluated there."""
        rounds = sorted({step for r in self.runs for step in r.accuracy})
        mean, low, high = [], [], []
        for step in rounds:
            values = [r.accuracy[step] for r in self.runs if step in r.accuracy]
            mean.append(statistics.fmean(values))
            low.append(min(values))
            high.append(max(values))
        return rounds, mean, low, high


@dataclass
class Report:
    source: str  # what was compared, in words
    configurations: list[Configuration]
    left_out: list[str]  # runs not in the comparison, and why

    @property
    def runs(self) -> int:
        return sum(len(c.runs) for c in self.configurations)


def _is_bookkeeping(key: str) -> bool:
    """Params that do not change a run's numbers, up to round-off (``fedlab.checkpoint``): runs
    that differ only in these, and in ``seed``, are one configuration. A sweep over one of them
    still separates them."""
    return not affects_numbers(key, exact=False)


def _param_key(swept: str, params: dict[str, str]) -> str | None:
    """The param a swept key sets: ``E`` → ``E``, the group ``partition`` → ``partition.name``."""
    swept = swept.lstrip("+~")
    if swept in params:
        return swept
    if f"{swept}.name" in params:
        return f"{swept}.name"
    return None


def _display(key: str, value: str, short: bool = False) -> tuple[str, str]:
    name = key.removesuffix(".name")
    if key == "B" and value in ("null", "None"):
        value = "∞"  # the paper's B=∞: the full local dataset
    elif short:
        value = _short_number(value)
    return name, value


def _short_number(value: str) -> str:
    """``0.0006595565870973196`` → ``0.00066``: a number with more than 3 significant digits
    (an Optuna trial's value) to 3; other text, and shorter numbers, as written."""
    try:
        number = float(value)
    except ValueError:
        return value
    short = f"{number:.3g}"
    return value if float(short) == number else short


def group(series: Sequence[RunSeries], swept_keys: Sequence[str] = ()) -> list[Configuration]:
    """Runs into configurations, in the order their first runs appear, each named by the params
    the compared configurations differ in (a sweep's swept keys, without ``seed``, first)."""
    all_keys = sorted({k for s in series for k in s.params})
    swept = []
    for key in swept_keys:
        found = _param_key(key.strip(), {k: "" for k in all_keys})
        if found and found != "seed" and found not in swept:
            swept.append(found)

    def identity(s: RunSeries) -> tuple[tuple[str, str], ...]:
        return tuple(
            (k, s.params.get(k, ""))
            for k in all_keys
            if k != "seed" and (k in swept or not _is_bookkeeping(k))
        )

    groups: dict[tuple, list[RunSeries]] = {}
    for s in series:
        groups.setdefault(identity(s), []).append(s)
    firsts = [runs[0].params for runs in groups.values()]
    varying = [
        k
        for k in all_keys
        if k != "seed"
        and (k in swept or not _is_bookkeeping(k))
        and len({p.get(k, "") for p in firsts}) > 1
    ]
    names = [k for k in swept if k in varying]
    if len({tuple(p.get(k, "") for k in names) for p in firsts}) < len(firsts):
        # The swept keys do not tell them apart: the other keys that vary, but not an option's
        # key that only follows its option (``algorithm.mu`` of every ``algorithm=fedprox``),
        # which tells apart nothing its option's name does not.
        names += [k for k in _ordered(varying) if k not in names and not _follows_option(k, firsts)]
    if not names:
        names = [k for k in DESCRIBE if k in all_keys]
    # Long numbers (an Optuna search's learning rates) shortened, unless that merges two.
    short = True
    labels = [
        tuple(_display(k, r[0].params.get(k, ""), True) for k in names) for r in groups.values()
    ]
    if len(set(labels)) < len(labels):
        short = False
    configurations = []
    for runs in groups.values():
        # A key this configuration does not have (another option's) is left out of its name.
        items = [_display(k, runs[0].params[k], short) for k in names if k in runs[0].params]
        configurations.append(Configuration(items, runs, paper.lookup(runs[0].params)))
    return configurations


def _follows_option(key: str, params: Sequence[dict[str, str]]) -> bool:
    """Whether ``key`` is a key of a group's option (``partition.alpha``) whose value, in these
    configurations, is the same wherever that option is (absent where another option is)."""
    group, _, leaf = key.rpartition(".")
    option = f"{group}.name"
    if not group or leaf == "name" or not any(option in p for p in params):
        return False
    values: dict[str, set[str | None]] = {}
    for p in params:
        values.setdefault(p.get(option, ""), set()).add(p.get(key))
    return all(len(v) == 1 for v in values.values())


def _ordered(keys: Sequence[str]) -> list[str]:
    """The paper's knobs first, then the rest alphabetically, an option's name first."""
    first = [k for k in DESCRIBE if k in keys]
    # An option's name before its keys: ``algorithm`` (``algorithm.name``), ``algorithm.mu``.
    return first + sorted(
        (k for k in keys if k not in first), key=lambda k: k.removesuffix(".name")
    )
