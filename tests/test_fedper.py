"""FedPer (``fedlab/algorithms/fedper.py``) against an independent NumPy implementation of
Arivazhagan et al. 2019, Algorithm 1, on the 2NN (three dense layers) over several rounds with
returning clients (so that each client's head carries from round to round), to float32
round-off; the global head that never moves; the layer counts it refuses with; its heads through
checkpoint and resume, bit for bit; and its one-line refusals.

Tolerance: ``atol=1e-5`` on weights of order 0.01-0.1, float32 in the engine and float64 in the
reference (seen: below 1e-6). A head restarted from the global one, a head update that reaches
the aggregate, or the wrong layers kept moves them by more than 1e-3 here.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.core.types import ClientWork
from fedlab.errors import ConfigError
from tests.conftest import assert_extending_equals_straight, assert_refused, checked
from tests.engines import make_fast
from tests.test_fast import O, opt
from tests.test_scaffold import _client, returning_rounds


def _mlp_grads(w: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """The 2NN's gradients (Dense-ReLU, Dense-ReLU, Dense; batch-mean softmax cross-entropy)."""
    w1, b1, w2, b2, w3, b3 = w
    h1 = np.maximum(x @ w1 + b1, 0)
    h2 = np.maximum(h1 @ w2 + b2, 0)
    z = h2 @ w3 + b3
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    dz = p / len(y)
    dh2 = (dz @ w3.T) * (h2 > 0)
    dh1 = (dh2 @ w2.T) * (h1 > 0)
    return [x.T @ dh1, dh1.sum(0), h1.T @ dh2, dh2.sum(0), h2.T @ dz, dz.sum(0)]


class ReferenceFedPer:
    """Algorithm 1 for the 2NN, in float64, with client SGD and the server step
    ``W_B <- W_B - eta_g * sum_j n_j (W_B - W_B,j) / sum_j n_j`` on the base; each client's
    head ``W_P,j`` (the global head the first time) trained with the base, and kept."""

    def __init__(self, weights, head: list[bool], lr: float, server_lr: float) -> None:
        self.w = [a.astype(np.float64) for a in weights]
        self.head, self.lr, self.server_lr = head, lr, server_lr
        self.heads: dict[int, list[np.ndarray]] = {}

    def start(self, client_id: int) -> list[np.ndarray]:
        own = iter(
            self.heads.get(client_id, [a for a, h in zip(self.w, self.head, strict=True) if h])
        )
        return [next(own).copy() if h else a.copy() for a, h in zip(self.w, self.head, strict=True)]

    def round(self, clients: list[ClientWork]) -> None:
        updates, weights = [], []
        for work in clients:
            start = self.start(work.client_id)
            y = [a.copy() for a in start]
            for epoch in work.order:
                for s in range(0, len(epoch), work.batch_size):
                    idx = epoch[s : s + work.batch_size]
                    g = _mlp_grads(y, work.x[idx].astype(np.float64), work.y[idx])
                    y = [a - self.lr * gg for a, gg in zip(y, g, strict=True)]
            self.heads[work.client_id] = [a for a, h in zip(y, self.head, strict=True) if h]
            updates.append(
                [0 * a if h else a0 - a for a0, a, h in zip(start, y, self.head, strict=True)]
            )
            weights.append(work.order.size)
        total = sum(weights)
        mean = [
            sum(n * u[k] for n, u in zip(weights, updates, strict=True)) / total
            for k in range(len(self.w))
        ]
        self.w = [a - self.server_lr * m for a, m in zip(self.w, mean, strict=True)]


def _initial(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(784, 200), (200,), (200, 200), (200,), (200, 10), (10,)]
    return [(rng.standard_normal(s) * 0.05).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("personal_layers", [1, 2])
def test_fedper_equals_algorithm_1_over_rounds(personal_layers: int) -> None:
    lr, server_lr = 0.05, 0.5
    engine = make_fast(
        "2nn", opt(O.sgd, lr), opt(O.sgd, server_lr), parallel_clients=1,
        algorithm="fedper", personal_layers=personal_layers,
    )  # fmt: skip
    algorithm = engine.algorithm
    assert engine.model.layer_of == (0, 0, 1, 1, 2, 2)
    head = [False] * (6 - 2 * personal_layers) + [True] * (2 * personal_layers)
    assert algorithm.head == head
    assert algorithm.shared() == [not h for h in head]
    w0 = _initial(0)
    reference = ReferenceFedPer(w0, head, lr, server_lr)
    # Clients 0 and 1 come back: their heads must carry over.
    schedule = [(0, 1, 2), (0, 1, 3), (1, 2, 3), (0, 3)]
    initial = engine.initialize(w0)
    for state, _out, store, ids in returning_rounds(engine, initial, reference, schedule):
        weights = engine.model_weights(state)
        for got, want in zip(weights, reference.w, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        for i in ids:
            assert len(store[i]) == 2 * personal_layers
            for got, want in zip(store[i], reference.heads[i], strict=True):
                np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # The global head is the initial one, bit for bit; the base moved.
    for got, initial, own in zip(weights, w0, head, strict=True):
        if own:
            np.testing.assert_array_equal(got, initial)
        else:
            assert np.abs(got - initial).max() > 1e-4
    # The heads are the clients' own (the test could fail).
    assert np.abs(store[0][0] - store[1][0]).max() > 1e-3
    # personal_model: the global base with the client's head; the global model for a stranger.
    own = algorithm.personal_model(weights, store[1])
    for got, base, h in zip(own, weights, head, strict=True):
        if not h:
            assert got is base
    for got, want in zip([a for a, h in zip(own, head, strict=True) if h], store[1], strict=True):
        assert got is want
    assert algorithm.personal_model(weights, None) is weights


def test_the_global_head_stays_put_under_server_adam_and_dp_noise() -> None:
    """Zero head updates, and a zeroed head in the aggregate: no server optimizer step and no
    DP noise reaches the global head."""
    from fedlab.privacy.dp_fedavg import DpFedAvgConfig

    dp = DpFedAvgConfig(name="dp_fedavg", noise_multiplier=1.0, clip=0.1)
    for kw in ({}, {"dp": dp, "clients_per_round": 2}):
        engine = make_fast(
            "2nn", opt(O.sgd, 0.05), opt(O.adam, 1e-2), parallel_clients=1,
            algorithm="fedper", personal_layers=1, **kw,
        )  # fmt: skip
        w0 = _initial(1)
        state = engine.initialize(w0)
        for round_num in (1, 2):
            state = engine.next(state, [_client(i, 8, seed=round_num) for i in (0, 1)]).state
        weights = engine.model_weights(state)
        np.testing.assert_array_equal(weights[4], w0[4])
        np.testing.assert_array_equal(weights[5], w0[5])
        assert np.abs(weights[0] - w0[0]).max() > 1e-4


def test_the_layer_counts_are_the_built_models() -> None:
    """``LAYERS_WITH_WEIGHTS`` (the refusal before TensorFlow) against the engine's count."""
    from fedlab.algorithms.fedper import LAYERS_WITH_WEIGHTS
    from fedlab.backends.fast.functional import functional_model
    from fedlab.data import DATASETS
    from fedlab.models import MODELS, fits

    for name, layers in LAYERS_WITH_WEIGHTS.items():
        spec = next(
            s for _, s in DATASETS.items() if fits(name, tuple(s.input_shape), s.example_labels)
        )
        model = functional_model(MODELS.get(name).build(tuple(spec.input_shape), spec.num_classes))
        assert len(set(model.layer_of[: model.num_trainable])) == layers, name


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["algorithm=fedper", "engine=tff"],
         ["algorithm=fedper cannot run on engine=tff", "TFF 0.87 has no FedPer",
          "allowed: engine=fast"]),
        (["algorithm=fedper", "algorithm.personal_layers=0"],
         ["algorithm.personal_layers=0 keeps no layer", "allowed: an integer >= 1"]),
        (["algorithm=fedper", "model=2nn", "algorithm.personal_layers=3"],
         ["algorithm.personal_layers=3 keeps every layer of model=2nn (3 with weights)",
          "allowed: 1 <= algorithm.personal_layers <= 2"]),
        (["algorithm=fedper", "model=cnn", "algorithm.personal_layers=7"],
         ["keeps every layer of model=cnn (4 with weights)",
          "allowed: 1 <= algorithm.personal_layers <= 3"]),
        (["algorithm=fedper", "model=logreg"],
         ["algorithm.personal_layers=1 keeps every layer of model=logreg (1 with weights)",
          "allowed: a model with more than one layer"]),
    ],
    ids=["tff", "no-layer-kept", "every-layer-2nn", "every-layer-cnn", "logreg"],
)  # fmt: skip
def test_fedper_refusals_are_one_line(overrides, words) -> None:
    assert_refused(overrides, words)


def test_a_model_it_does_not_know_is_refused_when_the_engine_is_built() -> None:
    """A model outside ``LAYERS_WITH_WEIGHTS`` (a user's) is checked at engine build."""
    with pytest.raises(ConfigError) as info:
        make_fast("logreg", opt(O.sgd, 0.1), opt(O.sgd, 1.0), algorithm="fedper")
    message = str(info.value)
    assert "\n" not in message
    assert "keeps every layer of the model (1 with weights)" in message


# -- heads through checkpoint and resume ------------------------------------------------------

FEDPER_RUN = [
    "algorithm=fedper", "model=2nn", "client_optimizer=sgd", "client_optimizer.lr=0.05",
    "server_optimizer=sgd", "num_clients=10", "C=0.3", "B=50", "tracking=none", "eval_every=2",
]  # fmt: skip


def test_extending_a_fedper_run_equals_running_it_straight(tmp_path) -> None:
    _, files = assert_extending_equals_straight(tmp_path, *FEDPER_RUN)
    assert len(files) > 5  # the same clients' heads, at the same rounds
    # Each client's file is its head: the output layer's kernel and bias.
    client_files = [name for name in files if name.startswith("client-")]
    assert [x.shape for x in files[client_files[0]]] == [(200, 10), (10,)]


def test_fedper_communicates_only_the_base(tmp_path) -> None:
    from fedlab.experiment import run
    from tests.test_cli_run import RecordingTracker

    logged = {}
    for algorithm in ("fedavg", "fedper"):
        cfg = checked(
            f"algorithm={algorithm}", "model=2nn", "client_optimizer=sgd", "server_optimizer=sgd",
            "rounds=1", "C=0.05", "tracking=none", "checkpoint_every=0",
        )  # fmt: skip
        tracker = RecordingTracker()
        run(cfg, output_dir=tmp_path / algorithm, tracker=tracker, progress=False)
        logged[algorithm] = {key: value for (key, step), value in tracker.metrics.items()}
    params, head = 199_210, 200 * 10 + 10  # the 2NN's, and its output layer's
    for key in ("comm/broadcast_mb", "comm/uploaded_mb", "comm/total_mb"):
        share = logged["fedper"][key] / logged["fedavg"][key]
        assert share == pytest.approx((params - head) / params, rel=1e-12)
