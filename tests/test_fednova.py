"""FedNova (``fedlab/algorithms/fednova.py``) against an independent NumPy implementation of
Wang et al. 2020's normalised averaging, on tiny clients of unequal sizes (so that they take
different numbers of local steps) over several rounds, with client SGD and with client SGD with
momentum; FedNova is FedAvg when every client takes the same steps; a real run; its one-line
refusals.

The reference builds ``a_i`` from its definition (how much of each local gradient the client's
momentum carried into its final model) and ``d_i = eta G_i a_i / ||a_i||_1`` from the recorded
gradients, not from the client's update and the closed form the module uses.

Tolerance: ``atol=1e-5`` on weights of order 0.01-1. The engine computes in float32 and the
reference in float64 (seen: below 1e-6 apart). Leaving out the normalisation, ``tau_eff`` or the
momentum's ``a_i`` moves the weights by more than 1e-3 here (the test checks that FedAvg's round
is that far from FedNova's).
"""

from __future__ import annotations

import numpy as np
import pytest

import fedlab
from fedlab.algorithms.fednova import a_norm
from fedlab.core.types import ClientWork
from fedlab.errors import ConfigError
from tests.conftest import checked
from tests.engines import make_fast
from tests.test_fast import O, opt
from tests.test_scaffold import _client, _grad


class ReferenceFedNova:
    """FedNova's rounds for a linear softmax model, in float64: local SGD with momentum ``rho``
    (``m = rho m + g; y = y - lr m``; ``rho = 0`` is SGD), then
    ``x <- x - server_lr * tau_eff * sum_i p_i d_i``."""

    def __init__(self, w, b, lr: float, rho: float, server_lr: float) -> None:
        self.x = [w.astype(np.float64), b.astype(np.float64)]
        self.lr, self.rho, self.server_lr = lr, rho, server_lr
        self.fedavg = [a.copy() for a in self.x]  # FedAvg's step from the same x, for scale

    def round(self, clients: list[ClientWork]) -> None:
        normalised, sizes, norms, updates = [], [], [], []
        for work in clients:
            y = [a.copy() for a in self.x]
            m = [np.zeros_like(a) for a in self.x]
            grads = []
            for epoch in work.order:
                for start in range(0, len(epoch), work.batch_size):
                    idx = epoch[start : start + work.batch_size]
                    g = _grad(y[0], y[1], work.x[idx].astype(np.float64), work.y[idx])
                    grads.append(g)
                    m = [self.rho * mm + gg for mm, gg in zip(m, g, strict=True)]
                    y = [yy - self.lr * mm for yy, mm in zip(y, m, strict=True)]
            tau = len(grads)
            # Gradient k is in the momentum of steps k, ..., tau-1, scaled by rho^(j-k) at step j.
            a = np.array([sum(self.rho ** (j - k) for j in range(k, tau)) for k in range(tau)])
            d = [self.lr * sum(a[k] * grads[k][p] for k in range(tau)) / a.sum() for p in range(2)]
            update = [xx - yy for xx, yy in zip(self.x, y, strict=True)]
            for u, dd in zip(update, d, strict=True):  # the update is lr G_i a_i
                np.testing.assert_allclose(u, dd * a.sum(), rtol=1e-9, atol=1e-12)
            normalised.append(d)
            updates.append(update)
            sizes.append(len(work.x))
            norms.append(a.sum())
        p = np.array(sizes, np.float64) / sum(sizes)
        tau_eff = float(np.dot(p, norms))
        step = [sum(pi * d[k] for pi, d in zip(p, normalised, strict=True)) for k in range(2)]
        fedavg = [sum(pi * u[k] for pi, u in zip(p, updates, strict=True)) for k in range(2)]
        self.fedavg = [xx - self.server_lr * f for xx, f in zip(self.x, fedavg, strict=True)]
        self.x = [xx - self.server_lr * tau_eff * s for xx, s in zip(self.x, step, strict=True)]


def _start(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w0 = (rng.standard_normal((784, 10)) * 0.01).astype(np.float32)
    b0 = (rng.standard_normal(10) * 0.01).astype(np.float32)
    return w0, b0


@pytest.mark.parametrize(
    ("client", "lr", "rho", "server_lr"),
    [("sgd", 0.1, 0.0, 1.0), ("sgdm", 0.05, 0.9, 0.5)],
    ids=["client-sgd", "client-sgdm-server-lr-0.5"],
)
def test_fednova_equals_normalised_averaging_over_rounds(client, lr, rho, server_lr) -> None:
    engine = make_fast(
        "logreg", opt(getattr(O, client), lr), opt(O.sgd, server_lr), parallel_clients=1,
        algorithm="fednova", num_clients=4,
    )  # fmt: skip
    if client == "sgdm":
        assert engine.client_optimizer.cfg.momentum == rho
    w0, b0 = _start()
    reference = ReferenceFedNova(w0, b0, lr, rho, server_lr)
    state = engine.initialize([w0, b0])
    # Batches of 4 over 2 epochs: 4, 8, 6 and 4 local steps. Clients 0 and 1 come back.
    sizes = {0: 7, 1: 13, 2: 10, 3: 5}
    for round_num, ids in enumerate([(0, 1, 2), (0, 1, 3), (1, 2, 3)], start=1):
        work = [_client(i, sizes[i], seed=round_num) for i in ids]
        out = engine.next(state, work)
        reference.round(work)
        state = out.state
        assert out.client_states == {}  # FedNova keeps nothing per client
        for got, want in zip(engine.model_weights(state), reference.x, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        apart = max(
            float(np.max(np.abs(a - b))) for a, b in zip(reference.x, reference.fedavg, strict=True)
        )
        assert apart > 1e-3, apart  # FedAvg's round would fail the comparison above


def test_fednova_is_fedavg_when_every_client_takes_the_same_steps() -> None:
    w0, b0 = _start(1)
    work = [_client(i, 8, seed=5) for i in range(3)]  # 2 epochs of 2 batches each
    for client, lr in (("sgd", 0.1), ("sgdm", 0.05)):
        models = {}
        for algorithm in ("fedavg", "fednova"):
            engine = make_fast(
                "logreg", opt(getattr(O, client), lr), opt(O.sgd, 1.0), parallel_clients=1,
                algorithm=algorithm,
            )  # fmt: skip
            out = engine.next(engine.initialize([w0, b0]), work)
            models[algorithm] = engine.model_weights(out.state)
        for a, b in zip(models["fedavg"], models["fednova"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.99])
def test_the_closed_form_of_a_is_its_definition(rho) -> None:
    for tau in (1, 2, 7, 60):
        by_definition = sum(sum(rho ** (j - k) for j in range(k, tau)) for k in range(tau))
        assert a_norm(tau, rho) == pytest.approx(by_definition, rel=1e-12)
    assert a_norm(0, rho) == 0


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["engine=tff"], ["algorithm=fednova", "engine=tff", "TFF 0.87 has no FedNova",
                          "allowed: engine=fast"]),
        (["client_optimizer=adam"],
         ["client_optimizer=adam", "allowed: client_optimizer=sgd|sgdm"]),
        (["aggregator=median"], ["aggregator=median", "allowed: aggregator=mean"]),
        (["aggregator=trimmed_mean"], ["aggregator=trimmed_mean", "allowed: aggregator=mean"]),
        (["privacy=dp_fedavg"], ["privacy=dp_fedavg", "allowed: privacy=none"]),
    ],
    ids=["tff", "client-adam", "median", "trimmed-mean", "dp"],
)  # fmt: skip
def test_fednova_refusals_are_one_line(overrides, words) -> None:
    with pytest.raises(ConfigError) as info:
        checked("algorithm=fednova", *overrides)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_fednova_brings_the_papers_optimizers_and_keeps_what_is_asked() -> None:
    cfg = checked("algorithm=fednova")
    assert (cfg.client_optimizer.name, cfg.server_optimizer.name) == ("sgd", "sgd")
    assert cfg.server_optimizer.lr == 1.0
    cfg = checked("algorithm=fednova", "client_optimizer=sgdm", "server_optimizer=adam")
    assert (cfg.client_optimizer.name, cfg.server_optimizer.name) == ("sgdm", "adam")


def test_a_fednova_run_through_the_python_api(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = fedlab.run(
        [
            "algorithm=fednova", "model=2nn", "partition=quantity_skew", "num_clients=20",
            "C=0.2", "B=50", "rounds=2", "tracking=none",
        ],
        progress=False,
    )  # fmt: skip
    accuracy = result.history["eval/accuracy"]
    assert [r for r, _ in accuracy] == [0, 1, 2]
    assert result.rounds == 2 and accuracy[-1][1] > 0.5
