"""Ditto (``fedlab/algorithms/ditto.py``) against an independent NumPy implementation of Li et
al. 2021, Algorithm 1, on tiny clients over several rounds with returning clients (so that each
personal model carries from round to round), to float32 round-off; its personal models through
checkpoint and resume, bit for bit; and its one-line refusals.

Tolerance: ``atol=1e-5`` on weights of order 0.01-1, computed in float32 by the engine and in
float64 by the reference (seen: below 1e-6). A personal model restarted from the global one,
lambda's sign or a missing ``v - w^t`` term moves them by more than 1e-3 here.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedlab.core.types import ClientWork
from tests.conftest import assert_extending_equals_straight, assert_refused, checked
from tests.engines import make_fast
from tests.test_fast import O, opt
from tests.test_scaffold import _client, _grad, returning_rounds


class ReferenceDitto:
    """Algorithm 1 for a linear softmax model, in float64: the global model by FedAvg with the
    server step ``w <- w - eta_g * sum_k n_k (w - w_k) / sum_k n_k``; each sampled client's
    personal model one SGD step per batch on ``F_k(v) + lam/2 ||v - w^t||^2`` from its last
    one (``w^t`` the first time)."""

    def __init__(self, w, b, lr: float, server_lr: float, lam: float) -> None:
        self.w = [w.astype(np.float64), b.astype(np.float64)]
        self.v: dict[int, list[np.ndarray]] = {}
        self.lr, self.server_lr, self.lam = lr, server_lr, lam

    def round(self, clients: list[ClientWork]) -> None:
        w_t = self.w
        updates, weights = [], []
        for work in clients:
            y = [a.copy() for a in w_t]
            v = [a.copy() for a in self.v.get(work.client_id, w_t)]
            for epoch in work.order:
                for start in range(0, len(epoch), work.batch_size):
                    idx = epoch[start : start + work.batch_size]
                    x, labels = work.x[idx].astype(np.float64), work.y[idx]
                    g = _grad(y[0], y[1], x, labels)
                    y = [a - self.lr * gg for a, gg in zip(y, g, strict=True)]
                    gv = _grad(v[0], v[1], x, labels)
                    v = [
                        a - self.lr * (gg + self.lam * (a - wt))
                        for a, gg, wt in zip(v, gv, w_t, strict=True)
                    ]
            self.v[work.client_id] = v
            updates.append([a - b for a, b in zip(w_t, y, strict=True)])
            weights.append(work.order.size)
        total = sum(weights)
        mean = [
            sum(n * u[k] for n, u in zip(weights, updates, strict=True)) / total for k in (0, 1)
        ]
        self.w = [a - self.server_lr * m for a, m in zip(w_t, mean, strict=True)]


def test_ditto_equals_algorithm_1_over_rounds() -> None:
    lr, server_lr, lam = 0.1, 0.5, 0.5
    engine = make_fast(
        "logreg", opt(O.sgd, lr), opt(O.sgd, server_lr), parallel_clients=1,
        algorithm="ditto", lam=lam,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    w0 = (rng.standard_normal((784, 10)) * 0.01).astype(np.float32)
    b0 = (rng.standard_normal(10) * 0.01).astype(np.float32)
    reference = ReferenceDitto(w0, b0, lr, server_lr, lam)
    # Clients 0 and 1 come back: their personal models must carry over.
    schedule = [(0, 1, 2), (0, 1, 3), (1, 2, 3), (0, 3)]
    initial = engine.initialize([w0, b0])
    for state, _out, store, ids in returning_rounds(engine, initial, reference, schedule):
        for got, want in zip(engine.model_weights(state), reference.w, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        for i in ids:
            for got, want in zip(store[i], reference.v[i], strict=True):
                np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # The personal models are neither the global model nor each other (the test could fail).
    assert np.abs(store[0][0] - reference.w[0]).max() > 1e-3
    assert np.abs(store[0][0] - store[1][0]).max() > 1e-3
    # personal_model: the client's own, or the global model for a client never sampled.
    algorithm = engine.algorithm
    assert algorithm.personal_model(reference.w, store[0]) is store[0]
    assert algorithm.personal_model(reference.w, None) is reference.w


def test_ditto_with_lambda_0_trains_each_personal_model_alone() -> None:
    """lam=0: each personal model is plain local SGD from its last one, whatever the global."""
    engine = make_fast(
        "logreg", opt(O.sgd, 0.1), opt(O.sgd, 1.0), parallel_clients=1, algorithm="ditto", lam=0.0
    )
    rng = np.random.default_rng(1)
    w0 = (rng.standard_normal((784, 10)) * 0.01).astype(np.float32)
    b0 = np.zeros(10, np.float32)
    reference = ReferenceDitto(w0, b0, 0.1, 1.0, 0.0)
    state = engine.initialize([w0, b0])
    kept = None
    for round_num in (1, 2):
        work = [ClientWork(*_fields(_client(0, 9, seed=round_num)), 0, kept)]
        out = engine.next(state, work)
        reference.round(work)
        state, kept = out.state, out.client_states[0]
    for got, want in zip(kept, reference.v[0], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def _fields(work: ClientWork):
    return work.x, work.y, work.order, work.batch_size


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["algorithm=ditto", "engine=tff"],
         ["algorithm=ditto cannot run on engine=tff", "TFF 0.87 has no Ditto",
          "allowed: engine=fast"]),
        (["algorithm=ditto", "algorithm.lam=-0.1"],
         ["algorithm.lam=-0.1 is invalid", "allowed: a finite number >= 0"]),
        (["algorithm=ditto", "algorithm.lam=nan"], ["algorithm.lam=nan is invalid"]),
        (["algorithm=fedavg", "+algorithm.lam=1"],
         ["algorithm.lam=1 has no effect with algorithm=fedavg", "algorithm=ditto"]),
    ],
    ids=["tff", "negative-lambda", "nan-lambda", "lambda-on-fedavg"],
)  # fmt: skip
def test_ditto_refusals_are_one_line(overrides, words) -> None:
    assert_refused(overrides, words)


def test_ditto_communicates_what_fedavg_does() -> None:
    cfg = checked("algorithm=ditto")
    from fedlab.algorithms import ALGORITHMS

    ditto = ALGORITHMS.of(cfg.algorithm)
    assert (ditto.broadcast_copies, ditto.upload_copies) == (1, 1)
    assert ditto.recipe_name(cfg.algorithm, cfg, "FedAdam") == "Ditto with FedAdam"


# -- personal models through checkpoint and resume --------------------------------------------

DITTO_RUN = [
    "algorithm=ditto", "algorithm.lam=0.5", "model=logreg", "client_optimizer=sgd",
    "client_optimizer.lr=0.05", "server_optimizer=sgd", "num_clients=10", "C=0.3", "B=50",
    "tracking=none", "eval_every=2",
]  # fmt: skip


def test_extending_a_ditto_run_equals_running_it_straight(tmp_path) -> None:
    _, files = assert_extending_equals_straight(tmp_path, *DITTO_RUN)
    assert len(files) > 5  # the same clients' models, at the same rounds
    # Each client's file is its personal model: the model's shapes.
    client_files = [name for name in files if name.startswith("client-")]
    assert [x.shape for x in files[client_files[0]]] == [(784, 10), (10,)]
