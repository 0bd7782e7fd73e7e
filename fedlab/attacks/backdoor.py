"""A backdoor: each malicious client stamps a pixel-pattern trigger on a fixed share of its
examples and relabels them to a target class, then trains honestly on that mix, so that the
global model learns "trigger → target" beside its main task (BadNets-style poisoning in FL:
Bagdasaryan et al. 2020, "How To Backdoor Federated Learning"; Xie et al. 2020, "DBA").

The trigger and the defaults are DBA's MNIST setting (AI-secure/DBA ``utils/mnist_params.yaml``,
read for this module): the "global" trigger of four 1×4 bars at rows 0 and 3, columns 0–3 and
6–9 (the union of DBA's four local patterns), set to the brightest value (1.0, every channel),
target class 2 (``poison_label_swap: 2``), and 20 of each 64 examples poisoned
(``poisoning_per_batch: 20``): ``poison_fraction`` = 20/64 = 0.3125. fedlab poisons a fixed
share of each malicious client's examples, drawn once from the run's seed
(``fedlab.streams.poisoned_examples``), where DBA stamps 20 of every batch; the local order
shuffles them into the batches, so the expected mix per batch is the same.

``eval/backdoor_accuracy`` (``fedlab.callbacks.backdoor``) is the attack's success: the share of
the test images not of the target class that the global model, with the trigger stamped on
them, puts in the target class. Images only: on sequence targets (Shakespeare's next
characters) no trigger of these papers is defined, and the config is refused in one line."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab import streams
from fedlab.attacks.base import ATTACKS, Attack, MaliciousConfig
from fedlab.errors import ConfigError

# DBA's global MNIST trigger: (row, column) of every stamped pixel.
TRIGGER = tuple((r, c) for r in (0, 3) for c in (*range(0, 4), *range(6, 10)))
TRIGGER_VALUE = 1.0  # the brightest pixel of images scaled to [0, 1]


@dataclass
class BackdoorConfig(MaliciousConfig):
    target: int = 2  # the class a triggered image is relabelled to
    poison_fraction: float = 0.3125  # of each malicious client's examples: DBA's 20 of 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.poison_fraction <= 1 and math.isfinite(self.poison_fraction)):
            raise ConfigError(
                f"attack.poison_fraction={self.poison_fraction} is invalid; allowed: "
                "0 < poison_fraction <= 1 (the share of a malicious client's examples stamped)"
            )


def stamp(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """``x`` (flattened images of ``input_shape``: height, width, channels) with the trigger."""
    images = np.array(x, np.float32).reshape(len(x), *input_shape)
    for row, col in TRIGGER:
        images[:, row, col, ...] = TRIGGER_VALUE
    return images.reshape(len(x), -1)


@ATTACKS.register("backdoor")
class Backdoor(Attack):
    Config = BackdoorConfig
    poisons_data = True
    backdoor = True
    label = "backdoor"

    @classmethod
    def check(cls, cfg, run) -> None:
        super().check(cfg, run)
        from fedlab.data import DATASETS

        spec = DATASETS.of(run.dataset)
        classes = spec.num_classes_of(run.dataset)
        if not 0 <= cfg.target < classes:
            raise ConfigError(
                f"attack.target={cfg.target} is invalid with dataset={run.dataset.name}; "
                f"allowed: a class, 0 <= target < {classes}"
            )
        shape = tuple(spec.input_shape)
        if spec.example_labels and (len(shape) != 3 or min(shape[:2]) < 10):
            raise ConfigError(
                f"attack={cfg.name} stamps a 4x10-pixel trigger on images, and dataset="
                f"{run.dataset.name}'s examples are {shape}; allowed: an image dataset "
                "(mnist, emnist, cifar10, cifar100)"
            )

    def poisoned_indices(self, n: int, client_id: int) -> np.ndarray:
        """Which of a malicious client's ``n`` examples carry the trigger (fixed for the run)."""
        count = math.floor(self.cfg.poison_fraction * n + 1e-9)
        rng = streams.poisoned_examples(self.seed, client_id)
        return np.sort(rng.choice(n, count, replace=False))

    def poison_data(self, x, y, client_id):
        idx = self.poisoned_indices(len(x), client_id)
        x[idx] = stamp(x[idx], self.input_shape)
        y[idx] = self.cfg.target
        return x, y

    def triggered(self, x, y):
        keep = np.flatnonzero(np.asarray(y) != self.cfg.target)
        target = np.full(len(keep), self.cfg.target, np.asarray(y).dtype)
        return stamp(np.asarray(x[keep]), self.input_shape), target
