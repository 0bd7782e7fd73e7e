"""Every random stream of a run, drawn from its one ``seed``.

Each stream is a NumPy ``SeedSequence`` keyed by the run's seed, the stream's id and what the draw
belongs to (the round, the client), so that each draw is a pure function of those: no generator
state carries from one round to the next, and a run resumed at round r draws exactly what an
uninterrupted one draws, in whatever order its clients train. The keys are kept as they were
when each stream was introduced (two predate the numbered ids), so that no run's numbers change.

========================  ===========================================  ==========================
stream                    key                                          drawn by
========================  ===========================================  ==========================
partition                 (seed, 0)                                    fedlab.data.federate
client sampling           (seed, 1, round)                             fedlab.core.sampling
local data order          (seed, 2, round, client)                     fedlab.core.sampling
evaluation sample         (seed, 3)                                    fedlab.callbacks.evaluation
dropout (engine=fast)     (seed, 4, round, client mod 2**32) -> 2 ints fedlab.backends.fast
stochastic quantization   (seed, round, client, 0xC0DE)                fedlab.compression
DP-FedAvg's noise         (seed, noise round, 0x5EED)                  fedlab.privacy.dp_fedavg
malicious clients         (seed, 5)                                    fedlab.attacks
a malicious update        (seed, 6, round, client)                     fedlab.attacks (gaussian)
poisoned examples         (seed, 7, client)                            fedlab.attacks (backdoor)
held-out examples         (seed, 8, client)                            fedlab.data.federate
========================  ===========================================  ==========================
"""

from __future__ import annotations

import numpy as np

PARTITION = 0
SAMPLING = 1
CLIENT_ORDER = 2
EVALUATION = 3
DROPOUT = 4
MALICIOUS = 5
ATTACK_UPDATE = 6
POISONED_EXAMPLES = 7
HOLDOUT = 8
_QUANTIZATION_TAG = 0xC0DE  # the compression stream's last key (it has no numbered id)
_DP_NOISE_TAG = 0x5EED  # DP-FedAvg's noise stream's last key


def partition(seed: int) -> np.random.Generator:
    """How the training examples are split over the clients."""
    return np.random.default_rng([seed, PARTITION])


def sampling(seed: int, round_num: int) -> np.random.Generator:
    """Which clients take part in round ``round_num``."""
    return np.random.default_rng([seed, SAMPLING, round_num])


def client_order(seed: int, round_num: int, client_id: int) -> np.random.Generator:
    """The order in which a client visits its examples in a round."""
    return np.random.default_rng([seed, CLIENT_ORDER, round_num, client_id])


def evaluation(seed: int) -> np.random.Generator:
    """Which clients a federated evaluation evaluates (the same every round)."""
    return np.random.default_rng([seed, EVALUATION])


def dropout(seed: int, round_num: int, client_id: int) -> np.ndarray:
    """The stateless TensorFlow seed of one client's local training in one round (shape [2],
    int64); engine=fast's step i folds ``i`` into it."""
    entropy = [seed, DROPOUT, round_num, client_id & 0xFFFFFFFF]
    return np.random.SeedSequence(entropy).generate_state(2, np.uint32).astype(np.int64)


def holdout(seed: int, client_id: int) -> np.random.Generator:
    """Which of a client's training examples are held out as its own test data (``holdout``),
    the same in every round and whatever the other clients hold."""
    return np.random.default_rng([seed, HOLDOUT, client_id])


def quantization(seed: int, round_num: int, client_id: int) -> np.random.Generator:
    """A client's stochastic rounding of its upload in one round."""
    return np.random.default_rng([seed, round_num, client_id, _QUANTIZATION_TAG])


def dp_noise(seed: int, noise_round: int) -> np.random.Generator:
    """DP-FedAvg's Gaussian noise on the clipped sum, per noised round (checkpointed)."""
    return np.random.default_rng([seed, noise_round, _DP_NOISE_TAG])


def malicious(seed: int) -> np.random.Generator:
    """Which clients are malicious (``attack.fraction`` of them, fixed for the run)."""
    return np.random.default_rng([seed, MALICIOUS])


def attack_update(seed: int, round_num: int, client_id: int) -> np.random.Generator:
    """What a malicious client draws for its update in round ``round_num`` (a random update)."""
    return np.random.default_rng([seed, ATTACK_UPDATE, round_num, client_id])


def poisoned_examples(seed: int, client_id: int) -> np.random.Generator:
    """Which of a malicious client's examples carry the backdoor trigger (fixed for the run)."""
    return np.random.default_rng([seed, POISONED_EXAMPLES, client_id])
