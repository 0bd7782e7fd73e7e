"""FedProx (``fedlab/algorithms/fedprox.py``): Li et al.'s local objective, checked against
numbers computed by hand; the rest of the round against TFF's ``build_weighted_fed_prox``; and
``mu=0`` is FedAvg bit for bit.

TFF 0.87 adds ``mu * (w_global - w)`` to the gradient, the opposite sign of the proximal term's
gradient (see the module's docstring). The TFF comparison therefore runs this engine with that
one sign flipped (``AsTffWritesIt``): everything else (state layout, optimizers, weighting,
metrics) must then agree, and the correct sign is checked against a NumPy FedProx instead.

Tolerances are those of ``tests/test_fast.py`` (its docstring gives the reasons): weights and
optimizer state within ``atol=1e-5`` for a plain server; for an adaptive server 99.9% of the
weights within 0.1% of the server learning rate and all within 5%, moments ``rtol=1e-4``;
loss ``rtol=1e-5``, accuracy ``atol=1e-6``, examples exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fedlab.algorithms.fedprox import FedProx
from fedlab.errors import ConfigError
from fedlab.optimizers import OptimizerConfig
from tests.conftest import checked, run_cli
from tests.engines import make_fast, make_tff, mnist_model
from tests.test_fast import (
    O,
    _assert_same_metrics,
    _assert_same_state,
    _clients,
    opt,
    tff_worker,  # noqa: F401 (a fixture: one TFF worker per module)
)


@dataclass(frozen=True)
class Case:
    model: str
    client: OptimizerConfig
    server: OptimizerConfig
    epochs: int
    batch_size: int | None
    mu: float
    sizes: tuple[int, ...] = (7, 13, 20)  # unequal clients


CASES = {
    "client-sgd-server-sgd-E2": Case("logreg", opt(O.sgd, 0.1), opt(O.sgd, 0.5), 2, 5, 0.1),
    "client-sgd-server-sgd-E3-mu1": Case("2nn", opt(O.sgd, 0.05), opt(O.sgd, 1.0), 3, 4, 1.0),
    "client-adam-server-sgd-E2": Case("2nn", opt(O.adam, 1e-3), opt(O.sgd, 1.0), 2, 4, 0.01),
    "client-sgd-server-adam": Case("logreg", opt(O.sgd, 0.1), opt(O.adam, 1e-2), 2, 5, 0.1),
    "client-adam-server-adam-E2": Case("2nn", opt(O.adam, 2e-4), opt(O.adam, 1e-2), 2, 4, 0.1),
}


class AsTffWritesIt(FedProx):
    """FedProx with TFF 0.87's sign of the proximal term: ``mu * (w_global - w)``."""

    def local_gradient(self, grads, weights, initial, inputs):
        mu = self.cfg.mu
        return [g + mu * (w0 - w) for g, w, w0 in zip(grads, weights, initial, strict=True)]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_round_equals_tffs_build_weighted_fed_prox(case: Case, tff_worker) -> None:  # noqa: F811
    tff_engine = make_tff(case.model, case.client, case.server, algorithm="fedprox", mu=case.mu)
    as_tff = make_fast(
        case.model,
        case.client,
        case.server,
        parallel_clients=1,
        algorithm="fedprox",
        algorithm_class=AsTffWritesIt,
        mu=case.mu,
    )
    fast = make_fast(
        case.model, case.client, case.server, parallel_clients=1, algorithm="fedprox", mu=case.mu
    )
    fedavg = make_fast(case.model, case.client, case.server, parallel_clients=1)
    rng = np.random.default_rng(4)
    initial = [
        (rng.standard_normal(w.shape) * 0.05).astype(np.float32)
        for w in mnist_model(case.model).get_weights()
    ]
    tff_state, fast_state = tff_engine.initialize(initial), as_tff.initialize(initial)
    num_weights = len(initial)
    for round_num in (1, 2):
        clients = _clients(case.sizes, case.epochs, case.batch_size, seed=10 + round_num)
        tff_out = tff_engine.next(tff_state, clients)
        fast_out = as_tff.next(fast_state, clients)
        tff_arrays = tff_engine.state_arrays(tff_out.state)
        _assert_same_state(
            as_tff.state_arrays(fast_out.state), tff_arrays, num_weights, case.server
        )
        _assert_same_metrics(fast_out, tff_out)
        # TFF's proximal term is there (FedAvg from the same state ends elsewhere), and it is not
        # Li et al.'s (fedlab's FedProx ends elsewhere too).
        for other in (fedavg, fast):
            arrays = other.state_arrays(other.next(fast_state, clients).state)
            apart = max(np.abs(a - b).max() for a, b in zip(arrays, tff_arrays, strict=True))
            assert apart > 1e-4, apart
        tff_state, fast_state = tff_out.state, as_tff.state_from_arrays(tff_arrays)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def logreg_round(w0, b0, clients, lr, server_lr, mu=0.0, clipnorm=None):
    """One round of a linear softmax model in float64: local SGD on each client's mean
    cross-entropy plus (mu/2)||(w, b) - (w0, b0)||^2, each step's gradient (w and b together)
    scaled by clipnorm / max(norm, clipnorm) (None: not clipped), then server SGD on the
    example-weighted mean of the updates (initial - trained). Returns the new (w, b) and how
    many steps were clipped."""
    updates, weights, clipped = [], [], 0
    for work in clients:
        w, b = w0.astype(np.float64).copy(), b0.astype(np.float64).copy()
        for epoch in work.order:
            for start in range(0, len(epoch), work.batch_size):
                idx = epoch[start : start + work.batch_size]
                p = _softmax(work.x[idx] @ w + b)
                p[np.arange(len(idx)), work.y[idx]] -= 1.0
                grad_w = work.x[idx].T @ p / len(idx) + mu * (w - w0)
                grad_b = p.mean(axis=0) + mu * (b - b0)
                scale = 1.0
                if clipnorm is not None:
                    scale = clipnorm / max(np.sqrt((grad_w**2).sum() + (grad_b**2).sum()), clipnorm)
                clipped += scale < 1
                w, b = w - lr * scale * grad_w, b - lr * scale * grad_b
        updates.append((w0 - w, b0 - b))
        weights.append(work.order.size)
    total = sum(weights)
    mean_w = sum(n * u[0] for n, u in zip(weights, updates, strict=True)) / total
    mean_b = sum(n * u[1] for n, u in zip(weights, updates, strict=True)) / total
    return (w0 - server_lr * mean_w, b0 - server_lr * mean_b), clipped


def _fedprox_round(w0, b0, clients, lr, mu, server_lr):
    """One FedProx round of a linear softmax model in float64 (``logreg_round``)."""
    return logreg_round(w0, b0, clients, lr, server_lr, mu=mu)[0]


@pytest.mark.parametrize("mu", [0.1, 1.0, 5.0])
def test_fedprox_equals_its_local_objective_by_hand(mu: float) -> None:
    lr, server_lr = 0.1, 0.5
    fast = make_fast(
        "logreg", opt(O.sgd, lr), opt(O.sgd, server_lr), parallel_clients=1,
        algorithm="fedprox", mu=mu,
    )  # fmt: skip
    rng = np.random.default_rng(2)
    w0 = (rng.standard_normal((784, 10)) * 0.01).astype(np.float32)
    b0 = (rng.standard_normal(10) * 0.01).astype(np.float32)
    clients = _clients((7, 13), 2, 5, seed=3)
    out = fast.next(fast.initialize([w0, b0]), clients)
    got_w, got_b = fast.model_weights(out.state)
    want_w, want_b = _fedprox_round(w0, b0, clients, lr, mu, server_lr)
    np.testing.assert_allclose(got_w, want_w, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got_b, want_b, atol=1e-5, rtol=0)
    # The term pulls toward the global model: a larger mu moves less than FedAvg does.
    plain_w, _ = _fedprox_round(w0, b0, clients, lr, 0.0, server_lr)
    assert np.abs(want_w - w0).sum() < np.abs(plain_w - w0).sum()


def test_mu_zero_is_fedavg_bit_for_bit() -> None:
    import tensorflow as tf

    client, server = opt(O.adam, 1e-3), opt(O.adam, 1e-2)
    prox = make_fast("2nn", client, server, parallel_clients=1, algorithm="fedprox", mu=0.0)
    fedavg = make_fast("2nn", client, server, parallel_clients=1)
    initial = mnist_model("2nn").get_weights()
    a, b = prox.initialize(initial), fedavg.initialize(initial)
    for round_num in (1, 2, 3):
        clients = _clients((5, 9, 12), 2, 4, seed=round_num)
        out_a, out_b = prox.next(a, clients), fedavg.next(b, clients)
        # The same model and server optimizer state (FedProx's state has no client
        # hyperparameters, as TFF's: the layouts differ by those scalars).
        pairs = zip(
            [*out_a.state.weights, *tf.nest.flatten(out_a.state.server)],
            [*out_b.state.weights, *tf.nest.flatten(out_b.state.server)],
            strict=True,
        )
        for x, y in pairs:
            np.testing.assert_array_equal(x, y)
        assert out_a.train_loss == out_b.train_loss
        a, b = out_a.state, out_b.state


def test_mu_and_its_key_are_checked(compose_cfg) -> None:
    with pytest.raises(ConfigError, match=r"algorithm.mu=-1.0 is invalid; allowed: .*>= 0"):
        checked("algorithm=fedprox", "algorithm.mu=-1")
    cfg = checked("algorithm=fedprox", "algorithm.mu=0.1")
    assert cfg.algorithm.mu == 0.1 and cfg.algorithm.name == "fedprox"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["algorithm=fedprox", "algorithm.mu=-1"], ["algorithm.mu=-1", ">= 0"]),
        (["algorithm=fedprox", "algorithm.mu=abc"], ["algorithm.mu", "a number"]),
        (
            ["algorithm=fedavg", "algorithm.mu=0.1"],
            ["algorithm.mu=0.1", "no effect with algorithm=fedavg", "algorithm=fedprox"],
        ),
    ],
    ids=["negative", "not-a-number", "fedavg-has-no-mu"],
)
def test_bad_fedprox_input_is_one_line(tmp_path, args, words) -> None:
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedlab: error: "), result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "mlflow.db").exists()  # no run started


def test_tff_is_refused_for_fedprox_with_mu(compose_cfg) -> None:
    with pytest.raises(ConfigError, match="opposite sign.*allowed: engine=fast, or algorithm.mu=0"):
        checked("algorithm=fedprox", "engine=tff")
    cfg = checked("algorithm=fedprox", "engine=tff", "algorithm.mu=0")
    assert cfg.algorithm.mu == 0.0
