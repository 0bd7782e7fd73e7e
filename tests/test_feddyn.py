"""FedDyn (``fedlab/algorithms/feddyn.py``) against an independent NumPy implementation of Acar et
al. 2021, Algorithm 1, on tiny clients of unequal sizes over several rounds with returning clients
(so that each client's ``g_i`` and the server's ``h`` carry from round to round), to float32
round-off; its per-client and server state through checkpoint and resume; a real run; its
one-line refusals.

The reference minimises the paper's local objective with plain SGD on its gradient
``grad L_i(theta) - g_i + alpha (theta - theta^{t-1})``, then applies the paper's updates of
``g_i``, ``h`` and ``theta`` as written there (``theta^t = mean(theta_i) - h/alpha``).

Tolerance: ``atol=1e-5`` on weights, ``h`` and ``g_i``, of order 0.01-1 (seen: below 1e-6 apart).
A wrong sign of ``g_i``, ``h`` without ``1/m``, example-weighted instead of plain means or a ``g_i``
not carried over move them by more than 1e-3 here (the test checks the terms are that large).
"""

from __future__ import annotations

import numpy as np
import pytest

import fedlab
from fedlab.core.types import ClientWork
from fedlab.errors import ConfigError
from tests.conftest import assert_extending_equals_straight, checked
from tests.engines import make_fast
from tests.test_fast import O, opt
from tests.test_scaffold import _client, _grad, returning_rounds


class ReferenceFedDyn:
    """Algorithm 1 for a linear softmax model, in float64, with local SGD of rate ``lr``."""

    def __init__(self, w, b, num_clients: int, alpha: float, lr: float) -> None:
        self.theta = [w.astype(np.float64), b.astype(np.float64)]
        self.h = [np.zeros_like(a) for a in self.theta]
        self.g = {}
        self.m, self.alpha, self.lr = num_clients, alpha, lr

    def round(self, clients: list[ClientWork]) -> None:
        trained = []
        for work in clients:
            g_i = self.g.get(work.client_id, [np.zeros_like(a) for a in self.theta])
            y = [a.copy() for a in self.theta]
            for epoch in work.order:
                for start in range(0, len(epoch), work.batch_size):
                    idx = epoch[start : start + work.batch_size]
                    grad = _grad(y[0], y[1], work.x[idx].astype(np.float64), work.y[idx])
                    y = [
                        yy - self.lr * (gl - gi + self.alpha * (yy - tt))
                        for yy, gl, gi, tt in zip(y, grad, g_i, self.theta, strict=True)
                    ]
            self.g[work.client_id] = [
                gi - self.alpha * (yy - tt) for gi, yy, tt in zip(g_i, y, self.theta, strict=True)
            ]
            trained.append(y)
        self.h = [
            hh - self.alpha / self.m * sum(y[k] - self.theta[k] for y in trained)
            for k, hh in enumerate(self.h)
        ]
        mean = [sum(y[k] for y in trained) / len(trained) for k in range(2)]
        self.theta = [mm - hh / self.alpha for mm, hh in zip(mean, self.h, strict=True)]


def test_feddyn_equals_algorithm_1_over_rounds() -> None:
    lr, alpha, num_clients = 0.1, 0.1, 4
    engine = make_fast(
        "logreg", opt(O.sgd, lr), opt(O.sgd, 1.0), parallel_clients=1, algorithm="feddyn",
        num_clients=num_clients, alpha=alpha,
    )  # fmt: skip
    assert engine.algorithm.cfg.alpha == alpha
    rng = np.random.default_rng(0)
    w0 = (rng.standard_normal((784, 10)) * 0.01).astype(np.float32)
    b0 = (rng.standard_normal(10) * 0.01).astype(np.float32)
    reference = ReferenceFedDyn(w0, b0, num_clients, alpha, lr)
    # Clients 0 and 1 come back, 1 three times: their g_i must carry over.
    schedule = [(0, 1, 2), (0, 1, 3), (1, 2, 3), (0, 1)]
    initial = engine.initialize([w0, b0])
    for state, out, store, ids in returning_rounds(engine, initial, reference, schedule):
        for got, want in zip(engine.model_weights(state), reference.theta, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        for got, want in zip(state.algorithm["h"], reference.h, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        for i in ids:
            for got, want in zip(store[i], reference.g[i], strict=True):
                np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        assert out.algorithm_metrics["h_norm"] == pytest.approx(
            np.sqrt(sum(np.sum(a**2) for a in reference.h)), rel=1e-4
        )
    # The dynamic terms are large enough for the comparison to see them.
    assert max(np.abs(a).max() for a in reference.h) / alpha > 1e-2
    assert max(np.abs(a).max() for g in reference.g.values() for a in g) > 1e-3


def test_feddyn_state_round_trips_with_h() -> None:
    engine = make_fast("logreg", opt(O.sgd, 0.1), opt(O.sgd, 1.0), parallel_clients=1,
                       algorithm="feddyn", num_clients=3)  # fmt: skip
    state = engine.initialize([np.zeros((784, 10), np.float32), np.zeros(10, np.float32)])
    state = engine.next(state, [_client(0, 6, seed=1), _client(1, 9, seed=1)]).state
    back = engine.state_from_arrays(engine.state_arrays(state))
    assert max(np.abs(a).max() for a in state.algorithm["h"]) > 0
    for a, b in zip(back.algorithm["h"], state.algorithm["h"], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["algorithm.alpha=0"], ["algorithm.alpha=0.0", "allowed: a finite number > 0"]),
        (["algorithm.alpha=-0.1"], ["algorithm.alpha=-0.1", "allowed: a finite number > 0"]),
        (["algorithm.alpha=nan"], ["algorithm.alpha=nan", "allowed: a finite number > 0"]),
        (["algorithm.alpha=inf"], ["algorithm.alpha=inf", "allowed: a finite number > 0"]),
        (["engine=tff"], ["algorithm=feddyn", "engine=tff", "TFF 0.87 has no FedDyn",
                          "allowed: engine=fast"]),
        (["server_optimizer=adam"],
         ["server_optimizer=adam", "allowed: server_optimizer=sgd with server_optimizer.lr=1.0"]),
        (["server_optimizer.lr=0.5"], ["server_optimizer.lr=0.5", "allowed: server_optimizer=sgd"]),
        (["aggregator=median"], ["aggregator=median", "allowed: aggregator=mean"]),
        (["aggregator=trimmed_mean"], ["aggregator=trimmed_mean", "allowed: aggregator=mean"]),
        (["privacy=dp_fedavg"], ["privacy=dp_fedavg", "allowed: privacy=none"]),
        (["compression=topk"], ["compression=topk", "allowed: compression=none"]),
        (["compression=quantize"], ["compression=quantize", "allowed: compression=none"]),
    ],
    ids=["alpha-0", "alpha-negative", "alpha-nan", "alpha-inf", "tff", "server-adam",
         "server-lr", "median", "trimmed-mean", "dp", "topk", "quantize"],
)  # fmt: skip
def test_feddyn_refusals_are_one_line(overrides, words) -> None:
    with pytest.raises(ConfigError) as info:
        checked("algorithm=feddyn", *overrides)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_feddyn_brings_the_papers_optimizers() -> None:
    cfg = checked("algorithm=feddyn")
    assert (cfg.client_optimizer.name, cfg.server_optimizer.name) == ("sgd", "sgd")
    assert cfg.server_optimizer.lr == 1.0 and cfg.algorithm.alpha == 0.01
    assert checked("algorithm=feddyn", "client_optimizer=adam").client_optimizer.name == "adam"


# -- per-client and server state through checkpoint and resume -------------------------------

FEDDYN_RUN = [
    "algorithm=feddyn", "algorithm.alpha=0.1", "model=2nn", "partition=quantity_skew",
    "num_clients=10", "C=0.2", "B=50", "tracking.log_model=false",
]  # fmt: skip


def test_extending_a_feddyn_run_equals_running_it_straight(tmp_path) -> None:
    metrics, files = assert_extending_equals_straight(
        tmp_path, *FEDDYN_RUN, "tracking=none", "eval_every=2"
    )
    assert {k for k, _ in metrics} >= {"algorithm/h_norm", "eval/accuracy"}
    # The server state (with h) and one file of g_i for each client that trained.
    assert len(files) > 3


def test_a_feddyn_run_through_the_python_api(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = fedlab.run(
        ["algorithm=feddyn", "model=2nn", "num_clients=20", "C=0.2", "B=50", "rounds=2",
         "tracking=none"],
        progress=False,
    )  # fmt: skip
    accuracy = result.history["eval/accuracy"]
    assert [r for r, _ in accuracy] == [0, 1, 2]
    assert result.rounds == 2 and accuracy[-1][1] > 0.5
    assert [r for r, _ in result.history["algorithm/h_norm"]] == [1, 2]
