"""The attack interface: which clients are malicious, and where they act.

A run's ``attack`` (the ``attack`` config group, ``none`` by default) makes ``attack.fraction``
of the K clients malicious: a fixed set, drawn once from the run's seed
(``fedlab.streams.malicious``). They are sampled like every other client; each round logs how
many of them took part (``attack/malicious_clients``). An attack acts at one or more of three
places, in this order within a round:

1. **data** (``poisons_data``): a malicious client trains on poisoned examples (label flipping, a
   backdoor trigger). ``poisoned(dataset, attack)`` wraps the run's federated dataset, so every
   process that trains clients sees it: the run's own data (``fedlab.experiment``) and each Ray
   actor, which rebuilds the data from the config (``fedlab.experiment.dataset_parts``);
2. **its upload** (``poisons_updates``): after local training, and after the algorithm has made
   its upload (``Algorithm.client_upload``), a malicious client replaces its update
   (``poison_update``: sign flipping, a random update, boosting); then the compressor encodes
   what it sends, as for every client (an attacker must still speak the wire format);
3. **on the server, colluding** (``omniscient``): the malicious clients see the round's honestly
   trained updates and craft theirs from them (``collude``: ALIE, IPM, min-max), before the
   aggregator; then the privacy option's clipping and noise (DP-FedAvg) and the aggregator act
   on what was crafted. These need every update in one place: not with ``placement=ray``, and
   not with compression (a crafted update would not be in the compressor's wire format).

Weights: a malicious client reports its true number of examples (an attacker that inflates it
would defeat the example-weighted mean without any other effort; the robust rules ignore it).

An attack is ``engine=fast`` only: TFF's builders have no step where a client or the server acts
maliciously. A diverging global model under attack is a result, not an error
(``fedlab.experiment``: the run ends, FINISHED, with the tag ``fedlab.diverged``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from fedlab import streams
from fedlab.data.base import FederatedDataset
from fedlab.errors import ConfigError
from fedlab.plugin import Plugin, PluginConfig, Registry

Update = list[np.ndarray]


@dataclass
class AttackConfig(PluginConfig):
    """The keys every attack option has (``none`` has no others)."""


@dataclass
class MaliciousConfig(AttackConfig):
    """The keys of every attack that makes clients malicious."""

    fraction: float = 0.2  # of the K clients, malicious (a fixed, seeded set); 0: none

    def __post_init__(self) -> None:
        if not (0 <= self.fraction < 1 and math.isfinite(self.fraction)):
            raise ConfigError(
                f"attack.fraction={self.fraction} is invalid; allowed: 0 <= fraction < 1 (the "
                "share of the num_clients clients that are malicious)"
            )


def malicious_clients(seed: int, num_clients: int, fraction: float) -> frozenset[int]:
    """The malicious clients: ``floor(fraction * K)`` of the K, drawn without replacement from
    the run's seed (``fedlab.streams.malicious``), the same for the whole run."""
    count = math.floor(fraction * num_clients + 1e-9)
    if count == 0:
        return frozenset()
    chosen = streams.malicious(seed).choice(num_clients, count, replace=False)
    return frozenset(int(c) for c in chosen)


class Attack(Plugin):
    """No attack: every hook returns what it is given."""

    Config: ClassVar[type] = AttackConfig
    engines: ClassVar[tuple[str, ...]] = ("fast",)
    missing_on_tff: ClassVar[str] = (
        "TFF's builders have no step where a client or the server acts maliciously"
    )
    #: Where it acts (see the module's docstring).
    poisons_data: ClassVar[bool] = False
    poisons_updates: ClassVar[bool] = False
    omniscient: ClassVar[bool] = False
    #: Whether it plants a backdoor: ``eval/backdoor_accuracy`` is measured (``triggered``).
    backdoor: ClassVar[bool] = False
    #: The paper's words for it (the ``attack`` tag).
    label: ClassVar[str] = ""

    def __init__(self, cfg: Any, run: Any) -> None:
        from fedlab.data import DATASETS

        self.cfg = cfg
        self.seed = run.seed
        self.clients_per_round = run.clients_per_round
        spec = DATASETS.of(run.dataset)
        self.input_shape = tuple(spec.input_shape)
        self.num_classes = int(spec.num_classes_of(run.dataset))
        self.malicious = malicious_clients(run.seed, run.num_clients, getattr(cfg, "fraction", 0.0))

    @property
    def active(self) -> bool:
        """Whether any client is malicious (``attack=none``, or a fraction of 0: no)."""
        return bool(self.malicious)

    # -- the three places an attack acts ----------------------------------------------------

    def poison_data(self, x: np.ndarray, y: np.ndarray, client_id: int) -> tuple[np.ndarray, ...]:
        """A malicious client's examples ``x`` (flattened, as the dataset holds them) and
        targets ``y`` (copies it may change), as it trains on them."""
        return x, y

    def poison_update(
        self, update: Update, weight: float, round_num: int, client_id: int
    ) -> tuple[Update, float]:
        """A malicious client's upload (its update ``initial - trained`` and weight) after its
        local training."""
        return update, weight

    def collude(
        self, updates: list[Update], malicious: list[bool], round_num: int
    ) -> tuple[list[Update], dict[str, float]]:
        """The round's finite updates (honestly trained), with the malicious clients' replaced
        by what they craft from all of them; and metrics (logged under ``attack/``)."""
        return updates, {}

    def triggered(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """A backdoor's test: the test examples not of the target class, with the trigger, and
        the target class as their label (None: no backdoor)."""
        return None

    # -- checks when the config is composed --------------------------------------------------

    @classmethod
    def check(cls, cfg: Any, run: Any) -> None:
        fraction = getattr(cfg, "fraction", 0.0)
        if not fraction:
            return
        name = f"attack={cfg.name}"
        if math.floor(fraction * run.num_clients + 1e-9) == 0:
            raise ConfigError(
                f"attack.fraction={fraction} of num_clients={run.num_clients} makes no client "
                f"malicious; allowed: 0 (no attack) or at least 1/{run.num_clients}"
            )
        from fedlab.aggregators import AGGREGATORS

        aggregator = AGGREGATORS.of(run.aggregator)
        if fraction >= 0.5 and aggregator.honest_majority:
            others = [n for n, e in AGGREGATORS.items() if not e.honest_majority]
            raise ConfigError(
                f"attack.fraction={fraction} with aggregator={run.aggregator.name}: it assumes "
                "an honest majority, which a malicious half breaks by construction; allowed: "
                f"attack.fraction < 0.5, or an aggregator that assumes none ({', '.join(others)})"
            )
        if cls.poisons_data:
            from fedlab.data import DATASETS

            if not DATASETS.of(run.dataset).example_labels:
                raise ConfigError(
                    f"{name} poisons examples of one class each, and dataset="
                    f"{run.dataset.name}'s examples have a class at every position (next-"
                    "character targets), which no trigger or label flip of the paper is "
                    "defined for; allowed there: attack=sign_flip|gaussian|alie|ipm|min_max"
                )
        if cls.omniscient:
            m = run.clients_per_round
            if m < 2:
                raise ConfigError(
                    f"{name} crafts its updates from the round's honest ones, and C={run.C} "
                    f"with num_clients={run.num_clients} samples {m} client a round; allowed: "
                    "C*num_clients >= 2"
                )
            if str(run.placement.name) == "ray":
                raise ConfigError(
                    f"{name} sees every update of the round on the server, and placement=ray "
                    "returns one partial sum per actor; allowed: placement=local"
                )
            if run.compression.name != "none":
                raise ConfigError(
                    f"{name} crafts updates on the server after the clients encoded theirs, so "
                    f"they would not be in compression={run.compression.name}'s wire format; "
                    "allowed: compression=none, or a client-side attack "
                    "(sign_flip|gaussian|scaling|label_flip|backdoor)"
                )


def benign_view(updates: list[Update], malicious: list[bool], need: int) -> list[Update]:
    """What an omniscient attacker estimates the honest updates' statistics from: the benign
    clients' updates of the round, or, where fewer than ``need`` are benign, every update as
    honestly trained (the malicious clients' own included: they trained honestly first)."""
    benign = [u for u, bad in zip(updates, malicious, strict=True) if not bad]
    return benign if len(benign) >= need else list(updates)


def replace_malicious(
    updates: list[Update], malicious: list[bool], crafted: Update
) -> list[Update]:
    """``updates`` with every malicious one replaced by ``crafted`` (the colluders agree)."""
    return [crafted if bad else u for u, bad in zip(updates, malicious, strict=True)]


ATTACKS: Registry[type[Attack]] = Registry("attack", "fedlab.attacks", Attack)


def build_attack(run: Any) -> Attack:
    """The attack of the run config ``run``."""
    return ATTACKS.of(run.attack)(run.attack, run)


@dataclass(frozen=True)
class PoisonedDataset(FederatedDataset):
    """A federated dataset whose malicious clients see their examples as the attack poisons
    them (``Attack.poison_data``); every other client, and the test set, are as they were."""

    attack: Any = None

    def client_data(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = super().client_data(client_id)
        if client_id in self.attack.malicious:
            x, y = self.attack.poison_data(np.array(x), np.array(y), client_id)
        return x, y


def poisoned(dataset: FederatedDataset, attack: Attack) -> FederatedDataset:
    """``dataset`` as the run's clients train on it: unchanged unless ``attack`` poisons the
    malicious clients' data. The one function through which every process that trains clients
    gets its data (``fedlab.experiment``)."""
    if not (attack.poisons_data and attack.active):
        return dataset
    kept = {f.name: getattr(dataset, f.name) for f in fields(FederatedDataset)}
    return PoisonedDataset(**kept, attack=attack)
