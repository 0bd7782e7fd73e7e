"""The numbers McMahan et al. 2017 report, as data, and which of them a run's config reproduces.

*Communication-Efficient Learning of Deep Networks from Decentralized Data* (AISTATS 2017),
MNIST, K=100 clients, client SGD, server FedAvg (plain averaging: server SGD with lr 1.0).
Both tables give the communication rounds needed to reach a test accuracy of 99% for the CNN and
97% for the 2NN; ``None`` marks a cell the paper reports as "—" (target not reached in its
budget). IID is the paper's shuffled 600-examples-per-client split; non-IID is its pathological
split: sorted by label, 200 shards of 300, 2 per client (``partition=shards`` with its defaults).

Where the values come from (checked on 2026-11-24 with the project's search tools; the paper's
own PDF could not be read there, so each is confirmed by secondary sources that quote it):

- Table 2 (CNN, C=0.1): all 18 cells agree with the table quoted in J. A. Lorencio Abril,
  "Paper Review: Communication-Efficient Learning of Deep Networks from Decentralized Data"
  (blog post, 2023-11-22). FedSGD, E=1 B=10 and E=5 B=10 are also given in our issue text.
- Table 1 (effect of C): all 40 cells agree with the same post; the 20 CNN cells also agree with
  the README of WwZzz/easyFL ("reported in [McMahan et al. 2017]"). Table 1's caption, quoted in
  a third source (notes on the paper, "Feddataset", 2019), reads "the MNIST 2NN with E = 1 and
  CNN with E = 5": the CNN half of Table 1 is E=5, not E=1.
- Table 1's CNN row C=0.1 overlaps Table 2's E=5 cells with different numbers (IID B=∞: 339 vs
  179; B=10: 18 vs 20; non-IID: 1100 vs 1000 and 206 vs 229): the paper tuned the learning rate
  per experiment. ``lookup`` returns both, Table 2 first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

IID, NON_IID = "iid", "non-iid"
INF = None  # B=∞: the full local dataset (``B=null`` in fedlab)
TARGET = {"cnn": 0.99, "2nn": 0.97}
NUM_CLIENTS = 100
SHARDS_PER_CLIENT, SHARD_SIZE = 2, 300

# Table 2: MNIST CNN, C=0.1; (E, B) -> rounds to 99% as (IID, non-IID). E=1 B=∞ is FedSGD.
TABLE_2: dict[tuple[int, int | None], tuple[int | None, int | None]] = {
    (1, INF): (626, 483),
    (5, INF): (179, 1000),
    (1, 50): (65, 600),
    (20, INF): (234, 672),
    (1, 10): (34, 350),
    (5, 50): (29, 334),
    (20, 50): (32, 426),
    (5, 10): (20, 229),
    (20, 10): (18, 173),
}

# Table 1: effect of C. (model, partition, B) -> rounds for C = 0.0, 0.1, 0.2, 0.5, 1.0.
# The 2NN runs with E=1 (target 97%), the CNN with E=5 (target 99%).
TABLE_1_C = (0.0, 0.1, 0.2, 0.5, 1.0)
TABLE_1_E = {"2nn": 1, "cnn": 5}
TABLE_1: dict[tuple[str, str, int | None], tuple[int | None, ...]] = {
    ("2nn", IID, INF): (1455, 1474, 1658, None, None),
    ("2nn", IID, 10): (316, 87, 77, 75, 70),
    ("2nn", NON_IID, INF): (4278, 1796, 1528, None, None),
    ("2nn", NON_IID, 10): (3275, 664, 619, 443, 380),
    ("cnn", IID, INF): (387, 339, 337, 164, 246),
    ("cnn", IID, 10): (50, 18, 18, 18, 16),
    ("cnn", NON_IID, INF): (1181, 1100, 978, 1067, None),
    ("cnn", NON_IID, 10): (956, 206, 200, 261, 97),
}


@dataclass(frozen=True)
class PaperValue:
    """One cell of the paper: rounds to the target, or None where the paper did not reach it."""

    rounds: int | None
    source: str  # "Table 1" or "Table 2"

    def __str__(self) -> str:
        value = "not reached" if self.rounds is None else str(self.rounds)
        return f"{value} ({self.source})"


def lookup(params: Mapping[str, object]) -> list[PaperValue]:
    """The paper's rounds-to-target for a run with these (flattened, MLflow-style) params, or
    ``[]`` when the run is not one of the paper's settings.

    A run matches only if everything the paper fixes matches: MNIST, K=100, the IID or the
    pathological shards split, uniform client sampling, client SGD, server SGD with lr 1.0,
    the mean without malicious clients, the paper's target for the model, and a (C, E, B) cell
    of Table 1 or 2.
    """
    p = {key: "null" if value is None else str(value) for key, value in params.items()}
    model = p.get("model.name")
    if model not in TARGET:
        return []
    partition = _partition(p)
    if partition is None:
        return []
    try:
        fixed = (
            p.get("dataset.name", "mnist") == "mnist"
            and int(p["num_clients"]) == NUM_CLIENTS
            and p.get("client_sampling", "uniform") == "uniform"
            and p["client_optimizer.name"] == "sgd"
            and p["server_optimizer.name"] == "sgd"
            and math.isclose(float(p["server_optimizer.lr"]), 1.0)
            and math.isclose(float(p["target_accuracy"]), TARGET[model])
            # FedAvg's mean over honest clients (a robust rule, or an attack, is another setting)
            and p.get("aggregator.name", "mean") == "mean"
            and (p.get("attack.name", "none") == "none" or float(p["attack.fraction"]) == 0)
        )
        if not fixed:
            return []
        fraction, epochs, batch = float(p["C"]), int(p["E"]), _batch(p["B"])
    except (KeyError, ValueError):
        return []
    column = 0 if partition == IID else 1
    found = []
    if model == "cnn" and math.isclose(fraction, 0.1) and (epochs, batch) in TABLE_2:
        found.append(PaperValue(TABLE_2[(epochs, batch)][column], "Table 2"))
    row = TABLE_1.get((model, partition, batch))
    if row is not None and epochs == TABLE_1_E[model]:
        for c, rounds in zip(TABLE_1_C, row, strict=True):
            if math.isclose(fraction, c):
                found.append(PaperValue(rounds, "Table 1"))
    return found


def _partition(p: Mapping[str, str]) -> str | None:
    name = p.get("partition.name")
    if name == "iid":
        return IID
    if name != "shards":
        return None
    shard_size = p.get("partition.shard_size", "null")
    paper_split = (
        p.get("partition.shards_per_client") == str(SHARDS_PER_CLIENT)
        and shard_size in ("null", str(SHARD_SIZE))
        and p.get("partition.assignment", "random") == "random"
    )
    return NON_IID if paper_split else None


def _batch(text: str) -> int | None:
    return None if text in ("null", "None", "") else int(text)
